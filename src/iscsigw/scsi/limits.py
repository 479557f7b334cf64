"""Block limits advertised in VPD 0xB0 and enforced by the command handlers."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1 << 20


@dataclass(frozen=True, slots=True)
class BlockLimits:
    """Limits in bytes; ``for_block_size`` turns them into block counts for one LU."""

    max_transfer_bytes: int = 32 * MiB
    optimal_transfer_bytes: int = 1 * MiB
    max_unmap_bytes: int = 1024 * MiB
    max_unmap_descriptors: int = 256
    unmap_granularity_bytes: int = 4096
    max_write_same_bytes: int = 1024 * MiB
    max_compare_and_write_blocks: int = 1
    max_atomic_transfer_bytes: int = 1 * MiB
    # Reported as the logical block size (exponent 0, as LIO's fileio does): libiscsi's
    # GetLBAStatus.UnmapSingle assumes one logical block per physical block.
    physical_block_size: int = 512

    def for_block_size(self, block_size: int) -> BlockCounts:
        phys = max(self.physical_block_size, block_size)
        lbppb = phys // block_size
        exponent = lbppb.bit_length() - 1
        return BlockCounts(
            max_transfer=max(1, self.max_transfer_bytes // block_size),
            optimal_transfer=max(1, self.optimal_transfer_bytes // block_size),
            # libiscsi: an explicit limit must be <= 1M blocks.
            max_unmap=min(1 << 20, max(lbppb, self.max_unmap_bytes // block_size)),
            max_unmap_descriptors=max(1, self.max_unmap_descriptors),
            unmap_granularity=max(1, self.unmap_granularity_bytes // block_size),
            max_write_same=max(1, self.max_write_same_bytes // block_size),
            max_compare_and_write=max(1, min(255, self.max_compare_and_write_blocks)),
            max_atomic_transfer=max(
                1,
                min(
                    0xFFFF,
                    self.max_atomic_transfer_bytes // block_size,
                    self.max_transfer_bytes // block_size,
                ),
            ),
            lbppb_exponent=exponent,
        )


@dataclass(frozen=True, slots=True)
class BlockCounts:
    max_transfer: int
    optimal_transfer: int
    max_unmap: int
    max_unmap_descriptors: int
    unmap_granularity: int
    max_write_same: int
    max_compare_and_write: int
    max_atomic_transfer: int
    lbppb_exponent: int
