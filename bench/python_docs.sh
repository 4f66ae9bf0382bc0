#!/usr/bin/env bash
# The reST sources (*.rst.txt) of the Python 3.11 documentation from Debian's
# python3.11-doc, extracted once into .cache/corpus/python3.11-doc/ (English
# prose and code; the training benchmarks' corpus). Prints the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=.cache/corpus/python3.11-doc
if [ ! -d "$corpus" ]; then
  mkdir -p .cache/corpus
  (cd .cache/corpus && apt-get download python3.11-doc >&2 && dpkg-deb -x python3.11-doc_*.deb extracted)
  mkdir -p "$corpus"
  cp -r .cache/corpus/extracted/usr/share/doc/python3.11/html/_sources/. "$corpus/"
fi
echo "$corpus"
