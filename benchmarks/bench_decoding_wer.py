"""WER and time of every decoding method on a larger synthetic vocabulary.

The demo's pipeline with about 250 glosses instead of about 50 (10 training signers, 100 clips
each; dev 1 signer, test 2 unseen signers): train the hybrid model with the demo config, then
decode the test split with each method of ``signlab evaluate --decode``.

    python benchmarks/bench_decoding_wer.py [--out runs/bench_decoding_wer] [--extra-nouns 200]
"""

from __future__ import annotations

import argparse

from signlab.data.synthetic import CorpusSpec
from signlab.demo import run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench_decoding_wer")
    parser.add_argument("--extra-nouns", type=int, default=200)
    args = parser.parse_args()
    spec = CorpusSpec(train_signers=10, dev_signers=1, test_signers=2, clips_per_signer=100, extra_nouns=args.extra_nouns,
                      seed=1)
    run_demo(args.out, spec, models={"hybrid": ("hybrid", [])})


if __name__ == "__main__":
    main()
