"""Phantom throughput: images per minute (rendered, DICOM-encoded and written) at a given size.

OMP_NUM_THREADS=1 python bench/phantom_speed.py --num 500 --size 256 --workers 1
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import click

from spine.phantom.tree import make_phantom_tree


@click.command()
@click.option("--num", type=int, default=500, show_default=True, help="Images to make (80% train, 20% test).")
@click.option("--size", type=int, default=256, show_default=True)
@click.option("--workers", type=int, default=1, show_default=True)
def main(num: int, size: int, workers: int) -> None:
    """Time make_phantom_tree and print images per minute."""
    work = tempfile.mkdtemp(prefix="phantom-speed-")
    try:
        start = time.perf_counter()
        make_phantom_tree(os.path.join(work, "tree"), num - num // 5, num // 5, size=size, workers=workers)
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(work, ignore_errors=True)
    click.echo(
        f"{num} images at width {size}, {workers} worker(s): {seconds:.1f} s, "
        f"{60 * num / seconds:.0f} images/minute, {1000 * seconds / num:.1f} ms/image"
    )


if __name__ == "__main__":
    main()
