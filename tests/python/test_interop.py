"""OffloadArray and the NumPy ecosystem: no implicit conversion, get/set,
DLPack both ways (docs/api.md, "Interoperability")."""

import numpy as np
import pytest

import pymic


def device_filled(stream, values, device_value):
    """An OffloadArray whose host copy holds `values` and device `device_value`."""
    oa = stream.bind(np.asarray(values, dtype=np.float64))
    oa.fill(device_value)
    return oa


# ------------------------------------------------------------ implicit conversion

IMPLICIT = [
    ("asarray", lambda oa: np.asarray(oa)),
    ("array", lambda oa: np.array(oa)),
    ("array of a list", lambda oa: np.array([oa, oa])),
    ("concatenate", lambda oa: np.concatenate([oa])),
]


@pytest.mark.parametrize("convert", [c for _, c in IMPLICIT], ids=[n for n, _ in IMPLICIT])
def test_implicit_conversion_raises_naming_get(stream, convert):
    oa = device_filled(stream, np.zeros(4), 99.0)
    with pytest.raises(TypeError, match=r"a\.get\(\)"):
        convert(oa)
    assert (oa.get() == 99.0).all()  # the array is still usable


@pytest.mark.parametrize("compare", [
    lambda x, oa: x == oa, lambda x, oa: oa == x, lambda x, oa: x != oa,
    lambda x, oa: x < oa, lambda x, oa: oa >= x, lambda x, oa: oa == oa,
], ids=["ndarray==oa", "oa==ndarray", "ndarray!=oa", "ndarray<oa", "oa>=ndarray", "oa==oa"])
def test_comparisons_raise_instead_of_answering_from_stale_data(stream, compare):
    oa = device_filled(stream, np.arange(4.0), 99.0)
    with pytest.raises(TypeError, match=r"a\.get\(\)"):
        compare(np.arange(4.0), oa)


def test_comparison_with_a_scalar_raises(stream):
    oa = device_filled(stream, np.zeros(4), 1.0)
    with pytest.raises(TypeError):
        oa == 1.0  # noqa: B015


def test_truth_value_raises_instead_of_answering_from_the_length(stream):
    # bool() would be len() > 0: True for a one-element array whose device
    # holds 0, whatever the data.  NumPy and CuPy answer from the data.
    oa = stream.zeros(1)
    empty = stream.zeros(0)
    for array in (oa, empty, oa[0]):
        with pytest.raises(TypeError, match=r"a\.get\(\)"):
            bool(array)
    with pytest.raises(TypeError):
        if oa:
            pass
    with pytest.raises(TypeError):
        not oa  # noqa: B015
    assert oa.get().tolist() == [0.0]  # still usable


def test_numpy_ufuncs_refuse_offload_arrays(stream):
    """A ufunc would compute on the host copy: NumPy refuses it."""
    oa = device_filled(stream, np.zeros(4), 1.0)
    with pytest.raises(TypeError, match="OffloadArray"):
        np.add(np.ones(4), oa)
    with pytest.raises(TypeError, match="OffloadArray"):
        np.sqrt(oa)
    with pytest.raises(TypeError, match="OffloadArray"):
        np.sum(oa)


def test_ndarray_operators_still_run_on_the_device(stream):
    """ndarray + OffloadArray defers to OffloadArray's reflected operators."""
    oa = device_filled(stream, np.zeros(4), 2.0)
    result = np.arange(4.0) + oa
    assert isinstance(result, pymic.OffloadArray)
    np.testing.assert_array_equal(result.get(), np.arange(4.0) + 2.0)


def test_repr_and_str_show_the_host_copy(stream):
    oa = device_filled(stream, np.arange(3.0), 7.0)
    stream.sync()
    assert repr(oa) == repr(np.arange(3.0))
    assert str(oa) == str(np.arange(3.0))


# ---------------------------------------------------------------------- get / set

@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int32, np.complex64])
def test_get_returns_the_device_data_and_leaves_the_host_copy(stream, dtype):
    host = np.zeros(5, dtype=dtype)
    oa = stream.bind(host)
    oa.fill(3)
    result = oa.get()
    assert isinstance(result, np.ndarray) and result is not host
    assert result.dtype == np.dtype(dtype) and result.shape == (5,)
    np.testing.assert_array_equal(result, np.full(5, 3, dtype=dtype))
    np.testing.assert_array_equal(host, np.zeros(5, dtype=dtype))


def test_get_of_a_view_and_of_fortran_order(stream):
    oa = stream.bind(np.asfortranarray(np.arange(12.0).reshape(3, 4)))
    result = oa.get()
    assert result.flags.f_contiguous
    np.testing.assert_array_equal(result, np.arange(12.0).reshape(3, 4))
    rows = stream.bind(np.arange(12.0).reshape(4, 3))[1:3]
    np.testing.assert_array_equal(rows.get(), np.arange(12.0).reshape(4, 3)[1:3])


def test_get_without_a_host_array(stream):
    oa = pymic.OffloadArray(4, np.int64, alloc_arr=False, stream=stream)
    oa.fill(5)
    np.testing.assert_array_equal(oa.get(), [5, 5, 5, 5])


def test_get_on_another_stream_is_ordered_after_the_arrays_work(device, stream):
    other = device.create_stream()
    oa = stream.bind(np.zeros(1000))
    oa.fill(4.0)
    result = oa.get(stream=other)
    other.sync()
    np.testing.assert_array_equal(result, np.full(1000, 4.0))


def test_set_copies_into_the_device_only(stream):
    host = np.zeros(4)
    oa = stream.bind(host)
    source = np.arange(4.0)
    assert oa.set(source) is oa
    source[:] = -1  # set() has finished with it
    np.testing.assert_array_equal(oa.get(), np.arange(4.0))
    np.testing.assert_array_equal(host, np.zeros(4))


def test_set_takes_any_layout(stream):
    oa = stream.bind(np.zeros((3, 4)))
    source = np.arange(24.0).reshape(6, 4)[::2]
    oa.set(source)
    np.testing.assert_array_equal(oa.get(), source)


def test_set_on_another_stream(device, stream):
    other = device.create_stream()
    oa = stream.bind(np.zeros(8))
    oa.set(np.arange(8.0), stream=other)
    other.sync()
    oa *= 2.0  # on the array's stream: after the copy
    np.testing.assert_array_equal(oa.get(), 2 * np.arange(8.0))


@pytest.mark.parametrize("bad, error", [
    (np.zeros(5), ValueError), (np.zeros(4, dtype=np.float32), ValueError),
    (np.zeros((2, 2)), ValueError), ([0.0, 1.0, 2.0, 3.0], TypeError),
])
def test_set_checks_shape_and_dtype(stream, bad, error):
    oa = device_filled(stream, np.zeros(4), 1.0)
    with pytest.raises(error):
        oa.set(bad)
    np.testing.assert_array_equal(oa.get(), np.ones(4))


def test_get_and_set_refuse_a_stream_of_another_device(stream):
    if len(pymic.devices) < 2:
        pytest.skip("needs two devices")
    oa = stream.bind(np.zeros(4))
    foreign = pymic.devices[1].create_stream()
    with pytest.raises(ValueError, match="stream"):
        oa.get(stream=foreign)
    with pytest.raises(ValueError, match="stream"):
        oa.set(np.zeros(4), stream=foreign)


# ------------------------------------------------------------------ DLPack

class Producer:
    """A DLPack producer that forwards to `inner` and records the calls,
    optionally forcing the legacy (unversioned) capsule."""

    def __init__(self, inner, legacy=False):
        self.inner, self.legacy, self.calls = inner, legacy, []

    def __dlpack_device__(self):
        return self.inner.__dlpack_device__()

    def __dlpack__(self, **kwargs):
        self.calls.append(kwargs)
        if self.legacy:
            kwargs.pop("max_version", None)
        return self.inner.__dlpack__(**kwargs)


@pytest.mark.device_memory_here
def test_dlpack_device_is_the_cpu(stream):
    assert stream.bind(np.zeros(2)).__dlpack_device__() == (1, 0)


@pytest.mark.device_memory_here
@pytest.mark.parametrize("legacy", [False, True], ids=["versioned", "legacy"])
def test_numpy_views_the_device_buffer_without_a_copy(stream, legacy):
    oa = device_filled(stream, np.zeros((2, 3)), 5.0)
    view = np.from_dlpack(Producer(oa, legacy))
    np.testing.assert_array_equal(view, np.full((2, 3), 5.0))  # the device's data
    expected = np.full((2, 3), 5.0)
    if not legacy:  # NumPy makes views of legacy capsules read-only
        view[0, 1] = 42.0                                      # writes the device
        expected[0, 1] = 42.0
    np.testing.assert_array_equal(oa.get(), expected)
    oa += 1.0                                                  # the device writes
    stream.sync()
    np.testing.assert_array_equal(view, expected + 1.0)        # the view sees it


@pytest.mark.device_memory_here
def test_capsule_kinds(stream):
    oa = stream.bind(np.zeros(3))
    assert '"dltensor"' in repr(oa.__dlpack__())
    assert '"dltensor_versioned"' in repr(oa.__dlpack__(max_version=(1, 0)))
    assert '"dltensor"' in repr(oa.__dlpack__(max_version=(0, 8)))


@pytest.mark.device_memory_here
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.int32, np.uint64,
                                   np.complex128, np.complex64])
def test_every_dtype_and_order_round_trips(stream, dtype):
    for host in (np.arange(12).reshape(3, 4).astype(dtype),
                 np.asfortranarray(np.arange(12).reshape(3, 4).astype(dtype))):
        oa = stream.bind(host.copy(order="A"))
        view = np.from_dlpack(oa)
        assert view.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(view, host)


@pytest.mark.device_memory_here
def test_a_slice_views_its_own_rows(stream):
    oa = stream.bind(np.arange(12.0).reshape(4, 3))
    view = np.from_dlpack(oa[1:3])
    np.testing.assert_array_equal(view, np.arange(12.0).reshape(4, 3)[1:3])


@pytest.mark.device_memory_here
def test_the_producer_syncs_its_stream_before_the_consumer_reads(device):
    """The stream rule: stream=None (what a CPU consumer passes) makes the
    export wait for the work queued on the array's stream."""
    stream = device.create_stream()
    oa = stream.bind(np.zeros(1 << 20))
    for _ in range(20):
        oa += 1.0  # queued, not waited for
    view = np.from_dlpack(oa)
    assert (view == 20.0).all()


@pytest.mark.device_memory_here
def test_the_consumer_passes_no_stream_for_the_cpu(stream):
    producer = Producer(stream.bind(np.zeros(2)))
    np.from_dlpack(producer)
    assert producer.calls and producer.calls[0].get("stream") is None


@pytest.mark.device_memory_here
def test_the_view_outlives_the_offload_array(device):
    import gc
    stream = device.create_stream()
    oa = device_filled(stream, np.zeros(1000), 3.0)
    view = np.from_dlpack(oa)
    del oa
    gc.collect()
    # Allocations that would reuse freed memory must not land in the view's.
    others = [device_filled(stream, np.zeros(1000), -1.0) for _ in range(8)]
    stream.sync()
    np.testing.assert_array_equal(view, np.full(1000, 3.0))
    del others
    gc.collect()
    stream.sync()
    held = device.memory_used
    del view
    gc.collect()
    stream.sync()
    assert held - device.memory_used >= 8000  # the deleter gave the buffer back


@pytest.mark.device_memory_here
def test_a_capsule_never_consumed_frees_its_reference(device):
    import gc
    stream = device.create_stream()
    oa = stream.bind(np.zeros(1000))
    capsule = oa.__dlpack__(max_version=(1, 0))
    del oa
    gc.collect()
    stream.sync()
    held = device.memory_used
    del capsule
    gc.collect()
    stream.sync()
    assert held - device.memory_used >= 8000


@pytest.mark.device_memory_here
def test_copy_true_exports_a_copy(stream):
    oa = device_filled(stream, np.zeros(3), 2.0)
    view = np.from_dlpack(oa, copy=True)
    view[0] = 9.0
    np.testing.assert_array_equal(oa.get(), np.full(3, 2.0))


@pytest.mark.device_memory_here
@pytest.mark.parametrize("kwargs, error", [
    ({"dl_device": (2, 0)}, BufferError),
    ({"stream": 1}, ValueError),
])
def test_dlpack_refuses_what_it_cannot_honour(stream, kwargs, error):
    oa = stream.bind(np.zeros(2))
    with pytest.raises(error):
        oa.__dlpack__(**kwargs)


def test_a_device_whose_memory_is_elsewhere_raises_buffer_error(stream, monkeypatch):
    """The decision follows the device's host_addressable property, not its
    kind: a device reporting False (as one whose memory is elsewhere would)
    refuses the export as the protocol says."""
    oa = stream.bind(np.zeros(2))
    if oa.device.host_addressable:
        monkeypatch.setitem(oa.device._info, "host_addressable", False)
    with pytest.raises(BufferError, match="outside this process"):
        oa.__dlpack__()
    with pytest.raises(BufferError):
        oa.__dlpack_device__()
    with pytest.raises(BufferError):
        np.from_dlpack(oa)


def test_from_dlpack_copies_a_cpu_tensor_into_device_memory(device):
    stream = device.create_stream()
    source = np.arange(6.0).reshape(2, 3)
    oa = pymic.from_dlpack(source, stream=stream)
    assert isinstance(oa, pymic.OffloadArray)
    assert oa.stream is stream and oa.shape == (2, 3) and oa.dtype == np.float64
    source[:] = -1.0  # a copy: the source may change at once
    np.testing.assert_array_equal(oa.get(), np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(oa.array, np.arange(6.0).reshape(2, 3))


@pytest.mark.device_memory_here
def test_from_dlpack_of_strided_data_and_of_an_offload_array(stream):
    strided = np.arange(20, dtype=np.int64)[::2]
    np.testing.assert_array_equal(pymic.from_dlpack(strided).get(), strided)
    oa = device_filled(stream, np.zeros(4), 7.0)
    copy = pymic.from_dlpack(oa, stream=stream)
    copy += 1.0
    np.testing.assert_array_equal(copy.get(), np.full(4, 8.0))
    np.testing.assert_array_equal(oa.get(), np.full(4, 7.0))


def test_from_dlpack_refuses_non_producers():
    with pytest.raises((TypeError, AttributeError)):
        pymic.from_dlpack([1.0, 2.0])
