#!/usr/bin/perl
# A co-process for `fanmap --pipe` in Perl: one line in, one line out.
#
#   fanmap -j 2 -i names.txt --pipe 'perl examples/upper.pl'
#
# $| = 1 flushes stdout after every print. Without it Perl block-buffers its
# output into the pipe, and fanmap (waiting for answers) and this script
# (waiting for more items) wait on each other.
use strict;
use warnings;

$| = 1;
while (my $line = <STDIN>) {
  chomp $line;
  print uc($line), "\n";
}
