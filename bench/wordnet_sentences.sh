#!/usr/bin/env bash
# The usage examples of WordNet 3.0 (Debian's wordnet-base): about 30,000
# everyday English sentences and phrases, the distillation text for the
# MiniLM recovery benchmark (another source than bench/sentences.txt, which
# it is scored on). Extracted once into .cache/corpus/wordnet/; prints the
# folder of the WordNet data files.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=.cache/corpus/wordnet
if [ ! -f "$corpus/data.noun" ]; then
  mkdir -p .cache/corpus/wordnet-deb "$corpus"
  (cd .cache/corpus/wordnet-deb && apt-get download wordnet-base >&2 && dpkg-deb -x wordnet-base_*.deb extracted)
  cp .cache/corpus/wordnet-deb/extracted/usr/share/wordnet/data.* "$corpus/"
fi
echo "$corpus"
