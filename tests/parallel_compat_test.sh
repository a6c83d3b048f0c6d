#!/usr/bin/env bash
# Runs the same command lines through GNU parallel -k (Debian's `parallel`) and through
# `fanmap --output-format stdout`, and compares their stdout byte for byte: every replacement
# string, ::: and :::: with two sources, --link, --colsep, -n 3, -X, -0, -d, -I, --tag,
# --dry-run, items with spaces, quotes, $, ; and newlines, commands that print nothing or no
# final newline, and a command line run through the shell.
#   tests/parallel_compat_test.sh BIN_DIR      (BIN_DIR holds fanmap and fanmap-worker)
set -uo pipefail

bin=$(cd "${1:?usage: parallel_compat_test.sh BIN_DIR}" && pwd)
command -v parallel >/dev/null || { echo "FAIL: GNU parallel is not installed (scripts/deps)"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fanmap-parallel-compat.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# parallel prints a citation notice unless told it was read; its shell is sh, as fanmap's.
export HOME=$tmp/home
mkdir -p "$HOME/.parallel" && touch "$HOME/.parallel/will-cite"
export PARALLEL_SHELL=/bin/sh
cd "$tmp" || exit 1

printf 'one\ntwo words\n' >f1
printf 'x.tar.gz\n/abs/p.q\n' >f2
printf 'a b\nc\0d$e\0last' >nul
printf 'p,q r,s' >commas

failures=0
cases=0
# compare NAME [<FILE] -- ARGS...: parallel -k -j1 ARGS vs fanmap -j1 --output-format stdout ARGS
# (-j1 unless ARGS start with -j: {%} and -X depend on the number of slots)
compare() {
  local name=$1 input=/dev/null
  shift
  if [[ $1 == "<"* ]]; then input=${1#<}; shift; fi
  [[ $1 == -- ]] && shift
  cases=$((cases + 1))
  local jobs=(-j1)
  [[ $1 == -j ]] && jobs=()
  parallel -k "${jobs[@]}" "$@" <"$input" >"$tmp/want" 2>"$tmp/want.err"
  "$bin/fanmap" "${jobs[@]}" --output-format stdout "$@" <"$input" >"$tmp/got" 2>"$tmp/got.err"
  if cmp -s "$tmp/want" "$tmp/got" && [[ -s $tmp/want || $name == *empty* ]]; then
    echo "ok: $name"
  else
    echo "FAIL: $name: fanmap $*"
    echo "--- parallel:"; od -c "$tmp/want" | head -20; cat "$tmp/want.err"
    echo "--- fanmap:"; od -c "$tmp/got" | head -20; cat "$tmp/got.err"
    failures=$((failures + 1))
  fi
}

nl=$'\n'
compare "{} with awkward items" -- echo {} ::: 'a b' "it's" 'x"y' '$HOME' 'a;b' "l1${nl}l2" '' '  two  '
compare "path replacement strings" -- echo {} {.} {/} {//} {/.} ::: a.b/c.d /x/y.z plain .hid 'd i r/f.e' a/ /
compare "job number and slot" -- echo {#} {%} ::: a b c
compare "positional with two sources" -- echo {2} {1} {1.} {2/} {2//} ::: a.x b.y ::: dir/f.g h
compare "all combinations, :::: twice" -- echo :::: f1 :::: f2
compare "::: then ::::" -- echo {1}={2} ::: a b :::: f1
compare "--link" -- --link echo ::: a b c ::: 1 2
compare "--colsep" -- --colsep , echo {2} {1} ::: 'a,b' 'c d,e f'
compare "--colsep: Perl's split keeps captured groups" -- --colsep '(,)' echo {1}+{2}+{3} ::: a,b
compare "--colsep: no empty first field from an empty match" -- --colsep 'x*' echo {1}+{2}+{3} ::: abc
compare "--colsep: Perl syntax" -- --colsep '\d+' echo {1}+{2}+{3} ::: a12b3c
compare "an empty source among several" -- echo ::: a b :::: /dev/null
compare "--colsep trims every value" -- --colsep , echo '[{1}]' '[{2}]' '[{}]' ::: ' a , b ' 'c d,	e '
compare "-n 3" -- -n 3 echo ::: a b c d e f g
compare "-n 2 positional" -- -n 2 echo {2} {1} ::: a b c
compare "-X" -- -X echo pre{}post ::: a b c d
compare "-m-like -n with context" -- -n 3 echo pre{}post ::: a 'b c' d
compare "-0 from stdin" "<nul" -- -0 echo
compare "-0 -a FILE" -- -0 -a nul echo {}
compare "-d" -- -d , -a commas echo
compare "-I" -- -I ,, echo ,, {} ::: a b
compare "--tag" -- --tag echo ::: a b ::: 1 2
compare "--tag -n 2" -- --tag -n 2 echo ::: a b c
compare "lines from stdin" "<f1" -- echo
compare "shell quoting" -- 'echo {} | tr a-z A-Z; echo [{/}]' ::: 'x; rm -rf ~' '$y `z`' "q'q" "n${nl}l"
compare "no placeholder in a shell line" -- 'echo start;echo' ::: 'a b' 'c;d'
compare "no final newline" -- printf %s- ::: a b c
compare "some print nothing (empty lines kept)" -- 'test {} = b && echo yes || echo' ::: a b c
compare "empty: nothing printed at all" -- true ::: a b c
compare "field past the last" -- echo {3}x ::: a ::: b
compare "-X spread over two job slots" -- -j 2 -X echo ::: 1 2 3 4 5 6 7
compare "-X spread over three job slots, -a FILE" -- -j 3 -X -a f2 -a f1 echo
compare "-X with {#} in the word" -- -X echo x{}y{#} ::: a b c
compare "two -a sources" -- -a f1 -a f2 echo {2} {1}
compare "--colsep {} is every column" -- --colsep , echo {} ::: 'a,b c' d
compare "--dry-run with columns" -- --dry-run --colsep , echo {2} {} ::: "a,b'c"
compare "--dry-run" -- --dry-run echo {} ::: 'a b' "c'd" plain
compare "two jobs at once, order kept" -- -j 2 'echo {#}; echo {} >&2' ::: 1 2 3 4 5 6

echo "$((cases - failures))/$cases cases match parallel -k"
exit $((failures > 0))
