"""Where a trained hybrid's attention decoder goes wrong, against its own CTC beam search.

Every clip of the split is encoded once; the attention decoder alone decodes it with several
length settings (GNMT alpha, ESPnet's per-token bonus, greedy, beam 8), CTC beam search beside
them. Printed: WER, sub / del / ins and the mean output length against the reference's per
setting; then, for CTC beam and attention beam, where in the sentence the deleted glosses are
(fifths of the reference) and how long the runs of consecutive deletions are, and a few clips
whose attention output is much shorter than the reference. A decoder that ends early deletes at
the end; one whose cross-attention jumps ahead deletes runs in the middle.

    python benchmarks/attention_errors.py RUN MANIFEST [--split dev --split test]
"""

from __future__ import annotations

import argparse
from collections import Counter

import jiwer
import numpy as np
from common import REPO  # noqa: F401  (puts src/ on the path)

from signlab.config import decoding_options
from signlab.data.manifest import read_manifests
from signlab.inference.recognizer import Recognizer, scan_for_wer
from signlab.metrics import word_error_rate

DECODERS = {
    "ctc_beam (4)": {"method": "ctc_beam", "beam_size": 4},
    "attention (greedy)": {"method": "attention", "beam_size": 1},
    **{f"attention (beam 4, alpha {a})": {"method": "attention", "beam_size": 4, "length_penalty": a} for a in (0, 0.5, 1, 2)},
    **{f"attention (beam 4, bonus {b})": {"method": "attention", "beam_size": 4, "length_bonus": b} for b in (0.5, 1.0)},
    "attention (beam 8)": {"method": "attention", "beam_size": 8},
}


def deletions(refs: list[str], hyps: list[str]) -> tuple[list[int], Counter]:
    """Deleted reference words per fifth of their sentence, and runs of consecutive deletions by length (5 = 5+)."""
    fifths, runs = [0] * 5, Counter()
    for ref, chunks in zip(refs, jiwer.process_words(refs, hyps).alignments):
        n = len(ref.split())
        for c in chunks:
            if c.type == "delete":
                runs[min(c.ref_end_idx - c.ref_start_idx, 5)] += 1
                for i in range(c.ref_start_idx, c.ref_end_idx):
                    fifths[min(4, 5 * i // n)] += 1
    return fifths, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("manifest")
    parser.add_argument("--split", action="append", help="default: dev and test")
    parser.add_argument("--examples", type=int, default=4)
    args = parser.parse_args()
    recognizer = Recognizer.load(args.run)
    samples = read_manifests([args.manifest])
    for split in args.split or ["dev", "test"]:
        scanned = scan_for_wer(recognizer, [s for s in samples if s.split == split], split)
        done = recognizer.decode_scanned(scanned, 32, [decoding_options(recognizer.config, **v) for v in DECODERS.values()])
        refs = [" ".join(s.glosses) for s in scanned.samples]
        hyps = {name: [h[s.id] for s in scanned.samples] for name, h in zip(DECODERS, done.hyps)}
        print(f"\n{split}: {len(refs)} clips")
        for name, out in hyps.items():
            w = word_error_rate(refs, out)
            longer = np.mean([len(h.split()) - len(r.split()) for r, h in zip(refs, out)])
            print(f"  {name:32s} WER {w.wer:6.2f}  sub {w.sub:4d} del {w.dele:4d} ins {w.ins:4d}  "
                  f"output length - reference {longer:+.2f} a clip")
        for name in ("ctc_beam (4)", "attention (beam 4, alpha 0)"):
            fifths, runs = deletions(refs, hyps[name])
            print(f"  {name}: deletions by fifth of the sentence {fifths}; runs of n consecutive deletions "
                  + ", ".join(f"{n}{'+' if n == 5 else ''}: {c}" for n, c in sorted(runs.items())))
        att, ctc = hyps["attention (beam 4, alpha 0)"], hyps["ctc_beam (4)"]
        short = [i for i, (r, h) in enumerate(zip(refs, att)) if len(h.split()) < len(r.split()) - 2][: args.examples]
        for i in short:
            print(f"    REF {refs[i]}\n    ATT {att[i]}\n    CTC {ctc[i]}")


if __name__ == "__main__":
    main()
