"""HostCopy: a batch's tensors fetched together, each back with its dtype, shape and bytes."""

import numpy as np
import pytest
import torch

from mtl_split_core.host_copy import ALIGN, HostCopy


def _tensors():
    g = torch.Generator().manual_seed(0)
    return [torch.rand((3, 5, 7), generator=g),                       # float32, 420 bytes
            torch.randint(0, 255, (3, 9, 11), generator=g).to(torch.uint8),  # odd byte count
            torch.arange(6, dtype=torch.int64).reshape(2, 3),
            torch.rand((4, 6, 2), generator=g)[:, 1:5, 0],          # not contiguous
            torch.zeros((0, 4)),                                      # empty
            torch.tensor([True, False, True])]


@pytest.mark.parametrize("pack", [False, True])
def test_every_tensor_comes_back_with_its_dtype_shape_and_values(pack):
    copy = HostCopy("cpu", pack=pack)
    first, second = _tensors()[:3], _tensors()[3:]
    assert copy.add(first) == [0, 1, 2] and copy.add(second) == [3, 4, 5]
    arrays = copy.fetch()
    for tensor, array in zip(first + second, arrays):
        assert array.dtype == tensor.numpy().dtype and array.shape == tuple(tensor.shape)
        np.testing.assert_array_equal(array, tensor.numpy())
        if pack:  # views of one buffer, each aligned for its dtype
            assert array.ctypes.data % ALIGN == 0 or array.size == 0


def test_packed_tensors_are_copied_when_added():
    """A later write to a source (a CUDA graph's reused output buffer) changes nothing."""
    source = torch.ones(4)
    copy = HostCopy("cpu", pack=True)
    copy.add([source])
    source.fill_(7.0)
    np.testing.assert_array_equal(copy.fetch()[0], np.ones(4, np.float32))


def test_nothing_added_fetches_nothing():
    assert HostCopy("cpu", pack=True).fetch() == [] and HostCopy("cpu").fetch() == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_one_pinned_copy_brings_everything():
    tensors = [t.cuda() for t in _tensors()]
    copy = HostCopy("cuda")
    copy.add(tensors)
    for tensor, array in zip(tensors, copy.fetch()):
        np.testing.assert_array_equal(array, tensor.cpu().numpy())
