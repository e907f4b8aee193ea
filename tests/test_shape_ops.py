"""Shape ops: reshape/view/flatten/squeeze/unsqueeze/transpose/permute/expand/repeat,
indexing, cat/stack/split/chunk and pad."""
from __future__ import annotations

import numpy as np
import pytest

import deepgrad as dg
from helpers import (
    Case,
    pad,
    params,
    requires_torch,
    run_case_against_torch,
    run_case_float32_dtypes,
    run_case_gradcheck,
    torch,
)

X3 = (2, 3, 4)

RESHAPE_CASES = [
    Case("reshape-2d", lambda m, a: a.reshape(6, 4), (X3,)),
    Case("reshape-tuple", lambda m, a: a.reshape((4, 6)), (X3,)),
    Case("reshape-infer", lambda m, a: a.reshape(4, -1, 2), (X3,)),
    Case("reshape-flat", lambda m, a: a.reshape(-1), (X3,)),
    Case("reshape-from-0d", lambda m, a: a.reshape(1, 1), ((),)),
    Case("reshape-to-0d", lambda m, a: a.reshape(()), ((1,),)),
    Case("reshape-fn", lambda m, a: m.reshape(a, (3, 8)), (X3,)),
    Case("view", lambda m, a: a.view(3, 8), (X3,)),
    Case("view-infer", lambda m, a: a.view(-1, 4), (X3,)),
    Case("flatten", lambda m, a: a.flatten(), (X3,)),
    Case("flatten-start1", lambda m, a: a.flatten(1), (X3,)),
    Case("flatten-0-1", lambda m, a: a.flatten(0, 1), (X3,)),
    Case("flatten-neg", lambda m, a: a.flatten(-2, -1), (X3,)),
    Case("flatten-kw", lambda m, a: a.flatten(start_dim=1, end_dim=2), ((2, 3, 4, 1),)),
    Case("flatten-fn", lambda m, a: m.flatten(a, 1), (X3,)),
    Case("squeeze-dim", lambda m, a: a.squeeze(1), ((2, 1, 3),)),
    Case("squeeze-neg-dim", lambda m, a: a.squeeze(-1), ((2, 3, 1),)),
    Case("squeeze-non1-noop", lambda m, a: a.squeeze(0), ((2, 1, 3),)),
    Case("squeeze-all", lambda m, a: a.squeeze(), ((1, 2, 1, 3, 1),)),
    Case("unsqueeze-0", lambda m, a: a.unsqueeze(0), ((2, 3),)),
    Case("unsqueeze-mid", lambda m, a: a.unsqueeze(1), ((2, 3),)),
    Case("unsqueeze-neg", lambda m, a: a.unsqueeze(-1), ((2, 3),)),
    Case("unsqueeze-0d", lambda m, a: a.unsqueeze(0), ((),)),
    Case("transpose", lambda m, a: a.transpose(0, 2), (X3,)),
    Case("transpose-neg", lambda m, a: a.transpose(-1, -2), (X3,)),
    Case("transpose-fn", lambda m, a: m.transpose(a, 0, 1), (X3,)),
    Case("T", lambda m, a: a.T, ((3, 4),)),
    Case("permute", lambda m, a: a.permute(2, 0, 1), (X3,)),
    Case("permute-tuple", lambda m, a: a.permute((1, 2, 0)), (X3,)),
    Case("permute-neg", lambda m, a: a.permute(-1, 0, 1), (X3,)),
    Case("expand", lambda m, a: a.expand(2, 3, 4), ((3, 1),)),
    Case("expand-minus1", lambda m, a: a.expand(3, -1), ((1, 4),)),
    Case("expand-new-dims", lambda m, a: a.expand(2, 3, 4), ((4,),)),
    Case("expand-0d", lambda m, a: a.expand(2, 3), ((),)),
    Case("expand-then-mul", lambda m, a, b: a.expand(3, 4) * b, ((3, 1), (3, 4))),
    Case("repeat", lambda m, a: a.repeat(2, 1), ((2, 3),)),
    Case("repeat-both", lambda m, a: a.repeat(2, 3), ((2, 3),)),
    Case("repeat-more-dims", lambda m, a: a.repeat(2, 1, 3), ((2, 3),)),
    Case("repeat-tuple", lambda m, a: a.repeat((1, 2)), ((3,),)),
    Case("flatten-0d", lambda m, a: a.flatten(), ((),)),
    Case("unsqueeze-end", lambda m, a: a.unsqueeze(2), ((2, 3),)),
    Case("transpose-same-dim", lambda m, a: a.transpose(1, 1), (X3,)),
    Case("permute-identity", lambda m, a: a.permute(0, 1, 2), (X3,)),
    Case("expand-same", lambda m, a: a.expand(2, 3), ((2, 3),)),
    Case("squeeze-0d", lambda m, a: a.squeeze(), ((),)),
    Case("reshape-view-chain", lambda m, a: a.transpose(0, 1).reshape(3, 8).T, (X3,)),
]

MASK34 = np.array([[True, False, True, True], [False, False, False, True],
                   [True, True, False, False]])
INDEX_CASES = [
    Case("getitem-int", lambda m, a: a[1], ((4, 5),)),
    Case("getitem-neg-int", lambda m, a: a[-1], ((4, 5),)),
    Case("getitem-int-int", lambda m, a: a[1, 2], ((4, 5),)),
    Case("getitem-slice", lambda m, a: a[1:3], ((4, 5),)),
    Case("getitem-slice-step", lambda m, a: a[:, 1:5:2], ((4, 5),)),
    Case("getitem-slice-neg-bounds", lambda m, a: a[-3:-1, :-2], ((4, 5),)),
    Case("getitem-slice-int", lambda m, a: a[1:, 3], ((4, 5),)),
    Case("getitem-none", lambda m, a: a[None, :, 1], ((4, 5),)),
    Case("getitem-none-mid", lambda m, a: a[:, None], ((4, 5),)),
    Case("getitem-ellipsis", lambda m, a: a[..., 2], (X3,)),
    Case("getitem-ellipsis-none", lambda m, a: a[1, ..., None], (X3,)),
    Case("getitem-ellipsis-slice", lambda m, a: a[..., 1:3], (X3,)),
    Case("getitem-list", lambda m, a: a[[0, 2]], ((4, 5),)),
    Case("getitem-list-repeated", lambda m, a: a[[0, 2, 0, 0]], ((4, 5),)),
    Case("getitem-list-dim1-repeated", lambda m, a: a[:, [1, 1, 3]], ((4, 5),)),
    Case("getitem-two-lists", lambda m, a: a[[0, 1, 0], [2, 2, 2]], ((4, 5),)),
    Case("getitem-slice-list", lambda m, a: a[1:3, [0, 0, 4]], ((4, 5),)),
    Case("getitem-neg-list", lambda m, a: a[[-1, 0, -1]], ((4, 5),)),
    Case("getitem-int-list-3d", lambda m, a: a[1, [2, 0, 2]], (X3,)),
    Case("getitem-tensor-idx", lambda m, a: a[m.tensor([3, 0, 3])], ((4, 5),)),
    Case("getitem-tensor-idx-2d", lambda m, a: a[m.tensor([[0, 1], [1, 1]])], ((4, 5),)),
    Case("getitem-tensor-idx-dim1", lambda m, a: a[:, m.tensor([4, 4, 0])], ((4, 5),)),
    Case("getitem-tensor-0d-idx", lambda m, a: a[m.tensor(2)], ((4, 5),)),
    Case("getitem-mask", lambda m, a: a[m.tensor(MASK34)], ((3, 4),)),
    Case("getitem-mask-rows", lambda m, a: a[m.tensor(np.array([True, False, True]))], ((3, 4),)),
    Case("getitem-mask-from-compare", lambda m, a: a[a > 0], ((3, 4),)),
    Case("getitem-mask-3d-leading", lambda m, a: a[m.tensor(MASK34[:2, :3])], (X3,)),
    Case("getitem-0d-result", lambda m, a: a[2], ((4,),)),
    Case("getitem-adv-split-by-slice", lambda m, a: a[[0, 1, 1], :, [3, 0, 3]], (X3,)),
    Case("getitem-adv-adjacent-mid", lambda m, a: a[:, [2, 0, 2], [1, 1, 3]], (X3,)),
    Case("getitem-ellipsis-list", lambda m, a: a[..., [0, 0, 3]], (X3,)),
    Case("getitem-none-list", lambda m, a: a[None, [1, 1]], ((4, 5),)),
    Case("getitem-slice-past-end", lambda m, a: a[2:10, 3:], ((4, 5),)),
    Case("getitem-empty-slice", lambda m, a: a[3:1], ((4, 5),)),
    Case("getitem-all-false-mask", lambda m, a: a[m.tensor(np.zeros(3, bool))], ((3, 4),)),
]

CAT_CASES = [
    Case("cat-dim0", lambda m, a, b: m.cat([a, b], dim=0), ((2, 3), (1, 3))),
    Case("cat-dim1", lambda m, a, b: m.cat([a, b], dim=1), ((2, 3), (2, 2))),
    Case("cat-dim-neg", lambda m, a, b, c: m.cat((a, b, c), dim=-1), ((2, 1), (2, 3), (2, 2))),
    Case("cat-3d-dim1", lambda m, a, b: m.cat([a, b], 1), ((2, 3, 4), (2, 1, 4))),
    Case("cat-default-dim", lambda m, a, b: m.cat([a, b]), ((2, 3), (4, 3))),
    Case("cat-same-tensor", lambda m, a: m.cat([a, a * 2.0, a], dim=0), ((2, 3),)),
    Case("cat-one-const", lambda m, a, b: m.cat([a, b], dim=0), ((2, 3), (1, 3)),
         requires_grad=[True, False]),
    Case("cat-single", lambda m, a: m.cat([a], dim=1), ((2, 3),)),
    Case("cat-empty-part", lambda m, a, b: m.cat([a, b], dim=0), ((2, 3), np.zeros((0, 3)))),
    Case("stack-dim0", lambda m, a, b: m.stack([a, b]), ((2, 3), (2, 3))),
    Case("stack-dim1", lambda m, a, b: m.stack([a, b], dim=1), ((2, 3), (2, 3))),
    Case("stack-dim-neg", lambda m, a, b, c: m.stack((a, b, c), dim=-1), ((2, 3),) * 3),
    Case("stack-0d", lambda m, a, b: m.stack([a, b]), ((), ())),
    Case("split-int", lambda m, a: a.split(2, dim=1), ((3, 5),)),
    Case("split-int-dim0", lambda m, a: a.split(1), ((3, 5),)),
    Case("split-sizes", lambda m, a: a.split([1, 3], dim=1), ((2, 4),)),
    Case("split-sizes-3d", lambda m, a: a.split([2, 1, 1], dim=-1), (X3,)),
    Case("split-fn", lambda m, a: m.split(a, 2, dim=0), ((5, 2),)),
    Case("split-fn-sizes", lambda m, a: m.split(a, [2, 1], dim=1), ((2, 3),)),
    Case("split-partial-use", lambda m, a: a.split(2, dim=1)[1] * 3.0, ((3, 5),)),
    Case("split-larger-than-dim", lambda m, a: a.split(7, dim=1), ((2, 5),)),
    Case("chunk-more-than-size", lambda m, a: a.chunk(5, dim=0), ((3, 2),)),
    Case("chunk", lambda m, a: a.chunk(3, dim=1), ((2, 5),)),
    Case("chunk-even", lambda m, a: a.chunk(2, dim=0), ((4, 3),)),
    Case("chunk-fewer-than-asked", lambda m, a: a.chunk(4, dim=0), ((6, 2),)),
    Case("chunk-fn", lambda m, a: m.chunk(a, 2, dim=-1), (X3,)),
    Case("chunk-partial-use", lambda m, a: a.chunk(3)[0].exp(), ((6, 2),)),
]

PAD_CASES = [
    Case("pad-constant-1d", lambda m, a: pad(m, a, (1, 2)), ((2, 3),)),
    Case("pad-constant-value", lambda m, a: pad(m, a, (1, 1, 2, 0), value=0.5), (X3,)),
    Case("pad-constant-3dims", lambda m, a: pad(m, a, (0, 1, 1, 0, 2, 1), mode="constant"),
         (X3,)),
    Case("pad-constant-zero-width", lambda m, a: pad(m, a, (0, 0, 1, 1)), ((2, 3),)),
    Case("pad-reflect-1d", lambda m, a: pad(m, a, (2, 1), mode="reflect"), ((2, 5),)),
    Case("pad-reflect-1d-batched", lambda m, a: pad(m, a, (1, 3), mode="reflect"), ((2, 3, 4),)),
    Case("pad-reflect-2d", lambda m, a: pad(m, a, (1, 1, 2, 1), mode="reflect"), ((1, 2, 4, 5),)),
    Case("pad-reflect-max-width", lambda m, a: pad(m, a, (4, 4), mode="reflect"), ((2, 5),)),
    Case("pad-replicate-1d", lambda m, a: pad(m, a, (2, 1), mode="replicate"), ((2, 3),)),
    Case("pad-replicate-2d", lambda m, a: pad(m, a, (1, 2, 1, 0), mode="replicate"),
         ((1, 2, 3, 4),)),
    Case("pad-replicate-wide", lambda m, a: pad(m, a, (3, 3), mode="replicate"), ((1, 2, 2),)),
    Case("pad-circular-1d", lambda m, a: pad(m, a, (2, 1), mode="circular"), ((2, 3, 4),)),
    Case("pad-circular-2d", lambda m, a: pad(m, a, (1, 2, 2, 0), mode="circular"),
         ((1, 2, 3, 4),)),
    Case("pad-circular-full-width", lambda m, a: pad(m, a, (3, 3), mode="circular"),
         ((1, 2, 3),)),
    Case("pad-circular-3d", lambda m, a: pad(m, a, (1, 0, 0, 1, 1, 1), mode="circular"),
         ((1, 1, 2, 3, 2),)),
]

CASES = RESHAPE_CASES + INDEX_CASES + CAT_CASES + PAD_CASES


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", params(CASES))
def test_matches_torch(case, dtype):
    run_case_against_torch(case, dtype)


@pytest.mark.parametrize("case", params(CASES))
def test_gradcheck(case):
    run_case_gradcheck(case)


@pytest.mark.parametrize("case", params(CASES))
def test_float32_stays_float32(case):
    run_case_float32_dtypes(case)


# --------------------------------------------------------------------------------------------
# specific behaviour
# --------------------------------------------------------------------------------------------
def test_repeated_index_accumulates_grad():
    x = dg.tensor([1.0, 2.0, 3.0], dtype=dg.float64, requires_grad=True)
    x[[0, 0, 2, 0]].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 0.0, 1.0])


def test_split_and_chunk_return_tuples_of_tensors():
    x = dg.arange(10).reshape(2, 5)
    parts = x.split(2, dim=1)
    assert [p.shape for p in parts] == [(2, 2), (2, 2), (2, 1)]
    assert all(isinstance(p, dg.Tensor) for p in parts)
    parts = dg.chunk(x, 2, dim=0)
    assert [p.shape for p in parts] == [(1, 5), (1, 5)]


def test_cat_shape_error():
    with pytest.raises(ValueError) as info:
        dg.cat([dg.ones(2, 3), dg.ones(2, 4)], dim=0)
    msg = str(info.value)
    assert "cat" in msg
    assert "(2, 3)" in msg and "(2, 4)" in msg


def test_stack_shape_error():
    with pytest.raises(ValueError) as info:
        dg.stack([dg.ones(2, 3), dg.ones(3, 2)])
    assert "stack" in str(info.value)


def test_reshape_error_names_shapes():
    with pytest.raises((ValueError, RuntimeError)) as info:
        dg.ones(2, 3).reshape(4, 2)
    msg = str(info.value)
    assert "(2, 3)" in msg


def test_index_out_of_range_raises():
    with pytest.raises(IndexError):
        dg.ones(2, 3)[5]
    with pytest.raises(IndexError):
        dg.ones(3)[[0, 5]]


def test_bool_mask_shape_mismatch_raises():
    # torch: IndexError "The shape of the mask [2] at index 0 does not match ... [3]"
    with pytest.raises(IndexError):
        dg.ones(3)[dg.tensor([True, False])]
    with pytest.raises(IndexError):
        dg.ones(2, 3)[dg.tensor([[True, False], [False, True]])]


def test_expand_non_singleton_raises():
    with pytest.raises((ValueError, RuntimeError)):
        dg.ones(2, 3).expand(4, 3)


def test_shape_ops_keep_dtype():
    x = dg.ones(2, 3, 4, dtype=dg.float32)
    outs = [x.reshape(-1), x.transpose(0, 1), x[0, [1, 1]], dg.cat([x, x]), dg.stack([x, x]),
            x.split(1)[0], dg.pad(x, (1, 1), mode="reflect"), x.expand(5, 2, 3, 4)]
    for out in outs:
        assert out.dtype == dg.float32
    assert dg.arange(6).reshape(2, 3)[1].dtype == dg.int64


@pytest.mark.parametrize("pad_arg,mode,message", [
    ((1, 1), "wrap", r"pad: mode must be one of \('constant', 'reflect', 'replicate', 'circular'\)"),
    ((3, 0), "reflect", r"reflect padding must be smaller than the padded dim; got \(3, 0\)"),
    ((0, 4), "circular", r"circular padding must be at most the padded dim; got \(0, 4\)"),
    ((-1, 0), "constant", r"negative padding"),
])
def test_pad_errors_name_the_mode_and_shape(pad_arg, mode, message):
    x = dg.zeros(2, 3)
    with pytest.raises(ValueError, match=message):
        dg.pad(x, pad_arg, mode=mode)


def test_pad_circular_wraps_values():
    x = dg.tensor(np.arange(4.0))
    np.testing.assert_array_equal(dg.pad(x, (2, 1), mode="circular").numpy(),
                                  [2.0, 3.0, 0.0, 1.0, 2.0, 3.0, 0.0])
