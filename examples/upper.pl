#!/usr/bin/perl
# A co-process for `fanmap --pipe` in Perl: one line in, one line out.
#
#   fanmap -j 2 -i names.txt --pipe 'perl examples/upper.pl'
#
# $| = 1 flushes stdout after every print. Without it Perl block-buffers its
# output into the pipe and keeps its last answers while it waits for more
# items; fanmap then closes its input after a quiet period to get them, and
# starts a fresh copy for the next items: correct, but slower.
use strict;
use warnings;

$| = 1;
while (my $line = <STDIN>) {
  chomp $line;
  print uc($line), "\n";
}
