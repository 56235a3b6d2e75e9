"""Ops and saved bytes: what the training benchmark measures."""
import gc
import weakref

import torch

from saevit_mm.models.utils.cost import (count_aten_ops, saved_tensor_bytes,
                                         train_step_cost)


def test_saved_bytes_count_each_storage_once_and_release_the_graph():
    w = torch.ones(256, requires_grad=True)
    refs = []

    def fn():
        y = (w * 2).exp()  # exp keeps its output: 1 KiB
        refs.append(weakref.ref(y))
        return y.view(16, 16).sum() + y.sum()  # a view of y: no new storage

    nbytes, out = saved_tensor_bytes(fn, (w, ))
    assert nbytes == 256 * 4
    del out
    gc.collect()
    assert refs[0]() is None  # nothing of the measured graph outlives it


def test_train_step_cost_of_a_conv_bn_relu():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
        torch.nn.ReLU())
    x = torch.randn(2, 3, 5, 5)
    cost = train_step_cost(model, x)
    # conv keeps x; BN its input, batch mean and inverse std, and the
    # running mean and variance; ReLU its output (float32)
    assert cost['saved_bytes'] == 4 * (2 * 3 * 25 + 2 * 2 * 8 * 25 + 4 * 8)
    assert 0 < cost['ops_forward'] < cost['ops_train']
    assert all(p.grad is None for p in model.parameters())


def test_views_are_not_ops_copies_are():
    x = torch.ones(4, 4)
    counts, _ = count_aten_ops(lambda: x.view(16).view(2, 8).t().relu())
    assert dict(counts) == {'relu': 1}
    # a transposed map reshaped: one copy (and a view of it)
    counts, _ = count_aten_ops(lambda: x.t().reshape(16).relu())
    assert dict(counts) == {'clone': 1, 'relu': 1}
