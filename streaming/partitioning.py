"""Which partition an event goes to: the same answer in every process and every language.

CRC-32 (IEEE 802.3, as zlib, Java's `java.util.zip.CRC32` and Go's `hash/crc32.ChecksumIEEE`
compute it) of the key's decimal ASCII text, modulo the partition count. Python's `hash()` is
salted per process and would scatter one card over several partitions.
"""

from __future__ import annotations

import zlib


def partition_for(key: int | str, partitions: int) -> int:
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    return zlib.crc32(str(key).encode("ascii")) % partitions


def owned_partitions(partitions: int, member: int, members: int) -> list[int]:
    """The partitions consumer `member` of `members` owns: p with p % members == member. Every
    partition has exactly one owner; rescaling changes owners, and the state (offsets, files)
    lives with the partition, so a new owner resumes where the old one stopped."""
    if not 0 <= member < members:
        raise ValueError(f"member must be in 0..{members - 1}, got {member}")
    return [p for p in range(partitions) if p % members == member]
