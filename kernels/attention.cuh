// kernels/attention.cuh — the online-softmax steps attention.cu and attention_sm90.cu share, after common.cuh.
// A thread holds two query rows (16·warp + lane/4 and the row 8 below) of its warp's 16, and the scores and
// output columns of each row spread over the 4 lanes of a quad: the tensor-core accumulator layout, whose
// register 4·i + 2·h + e of n-tile i is row h, column 8·i + 2·(lane % 4) + e.
#pragma once

// After a block of keys, whose raw scores' maximum per row is mx (this thread's part): the rows' running maximum
// mrow (scaled), the factor alpha that rescales what came before, and base, the maximum to subtract from the new
// scaled scores (0 for a row fully masked so far, so that everything stays 0). The scale sl2 is positive, so
// the raw scores' maximum is the scaled one's. FTZ: exp2 in one instruction (exp2_ftz).
template <bool FTZ>
DEVI void att_softmax_rescale(float (&mx)[2], float (&mrow)[2], float (&lrow)[2], float sl2, float (&alpha)[2],
                              float (&base)[2]) {
    UNROLL for (int r = 0; r < 2; ++r) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        float mnew = fmaxf(mrow[r], mx[r] * sl2);
        base[r] = mnew == NEG_INF ? 0.0f : mnew;
        alpha[r] = FTZ ? exp2_ftz(mrow[r] - base[r]) : exp2f(mrow[r] - base[r]);
        mrow[r] = mnew;
        lrow[r] *= alpha[r];
    }
}

// o divided by the rows' sums (this thread's parts lrow, summed over the quad here) into rows row0 and row0 + 8
// (those < Tq) of ob (row stride ld_o, a multiple of 8), NT n-tiles of 8 columns.
template <int NT, class T>
DEVI void att_store_rows(T* ob, int ld_o, int row0, int Tq, const float (&o)[NT][4], float (&lrow)[2]) {
    int t = threadIdx.x & 3;
    UNROLL for (int r = 0; r < 2; ++r) {
        lrow[r] += __shfl_xor_sync(0xffffffffu, lrow[r], 1);
        lrow[r] += __shfl_xor_sync(0xffffffffu, lrow[r], 2);
        lrow[r] = lrow[r] > 0.0f ? 1.0f / lrow[r] : 0.0f;
    }
    UNROLL for (int i = 0; i < NT; ++i) UNROLL for (int h = 0; h < 2; ++h) {
        int row = row0 + 8 * h;
        if (row < Tq) store_pair(ob + (long)row * ld_o + i * 8 + 2 * t, o[i][2 * h] * lrow[h], o[i][2 * h + 1] * lrow[h]);
    }
}
