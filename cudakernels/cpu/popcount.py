"""Population count usable inside numba njit code.

`np.bitwise_count` does not compile in njit, so this emits LLVM's `ctpop` directly; in a loop over output
channels LLVM vectorises it (vpopcntq on AVX-512 VPOPCNTDQ, a vpshufb nibble table on plain AVX2).
"""
from __future__ import annotations

from numba import types
from numba.extending import intrinsic


@intrinsic
def popcount(typingctx, x):
    """Number of set bits of an unsigned integer word, as int64 (so sums never mix signedness)."""
    if not isinstance(x, types.Integer) or x.signed:
        return None

    def codegen(context, builder, signature, args):
        count = builder.ctpop(args[0])
        return builder.zext(count, context.get_value_type(types.int64)) if x.bitwidth < 64 else count

    return types.int64(x), codegen
