"""The sha256 of every record a job wrote, per split, and whether they equal a saved set.

Shows that a change leaves the records unchanged: the set of serialized
examples per split (shard layout aside) is compared, not the files.

    python benchmarks/record_digests.py --output_dir=DIR [--save=digests.json] [--compare=old.json]

Prints `split_<name>_records=N` lines and, with --compare, `same_records=true|false`
(exit 1 when false).
"""

from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import json
import os
import struct
import sys
from typing import Dict, Iterator, List


def _records(path: str) -> Iterator[bytes]:
    """The records of one TFRecord file (read without TensorFlow; CRCs not checked)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        while True:
            head = f.read(12)
            if not head:
                return
            (length,) = struct.unpack("<Q", head[:8])
            data = f.read(length)
            f.read(4)
            yield data


def digests(output_dir: str) -> Dict[str, List[str]]:
    """split -> sorted sha256 hex digests of its records, for the splits of the folder's card."""
    card = next(os.path.join(output_dir, name) for name in ("dataset.json", "features.json")
                if os.path.exists(os.path.join(output_dir, name)))
    with open(card, encoding="utf-8") as f:
        counts = json.load(f)["counts"]
    out = {}
    for split in sorted(counts):
        files = sorted(glob.glob(os.path.join(output_dir, f"{split}-*-of-*.tfrecord*")))
        out[split] = sorted(hashlib.sha256(r).hexdigest() for p in files for r in _records(p))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--save", default="")
    parser.add_argument("--compare", default="")
    args = parser.parse_args(argv)
    ours = digests(args.output_dir)
    for split, values in ours.items():
        print(f"split_{split}_records={len(values)}")
    if args.save:
        with open(args.save, "w", encoding="utf-8") as f:
            json.dump(ours, f, indent=1, sort_keys=True)
    if args.compare:
        with open(args.compare, encoding="utf-8") as f:
            theirs = json.load(f)
        same = ours == theirs
        print(f"same_records={str(same).lower()}")
        return 0 if same else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
