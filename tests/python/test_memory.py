"""The low-level memory API of OffloadStream (API.md section 5, "Low level")."""

import gc
import weakref

import numpy as np
import pytest

import pymic

DOUBLE = 8


def host_array(values):
    return np.ascontiguousarray(values, dtype=np.float64)


def test_allocate_returns_an_opaque_pointer(stream):
    pointer = stream.allocate_device_memory(1024)
    assert pointer is not None
    assert not isinstance(pointer, int)


@pytest.mark.parametrize("alignment", [8, 64, 4096])
def test_allocation_is_aligned(stream, alignment):
    pointer = stream.allocate_device_memory(100, alignment=alignment)
    assert stream.translate_device_pointer(pointer) % alignment == 0


def test_default_alignment_is_64(stream):
    for size in (1, 3, 65, 1000):
        pointer = stream.allocate_device_memory(size)
        assert stream.translate_device_pointer(pointer) % 64 == 0


def test_translate_gives_distinct_nonzero_ints(stream):
    first = stream.allocate_device_memory(64)
    second = stream.allocate_device_memory(64)
    address_one = stream.translate_device_pointer(first)
    address_two = stream.translate_device_pointer(second)
    assert isinstance(address_one, int) and address_one != 0
    assert address_one != address_two


def test_translate_none_is_zero(stream):
    assert stream.translate_device_pointer(None) == 0


def test_round_trip_host_device_host(stream):
    source = host_array(np.arange(16))
    target = np.zeros(16)
    pointer = stream.allocate_device_memory(source.nbytes)
    stream.transfer_host2device(source.ctypes.data, pointer, source.nbytes)
    stream.transfer_device2host(pointer, target.ctypes.data, source.nbytes)
    stream.sync()
    np.testing.assert_array_equal(target, source)


def test_transfers_with_offsets(stream):
    source = host_array(np.arange(10))
    pointer = stream.allocate_device_memory(10 * DOUBLE)
    stream.transfer_host2device(source.ctypes.data, pointer, 10 * DOUBLE)
    # Host elements 2..5 -> device elements 6..9.
    stream.transfer_host2device(source.ctypes.data, pointer, 4 * DOUBLE,
                                offset_host=2 * DOUBLE, offset_device=6 * DOUBLE)
    target = np.full(10, -1.0)
    # Device elements 5..9 -> host elements 0..4.
    stream.transfer_device2host(pointer, target.ctypes.data, 5 * DOUBLE,
                                offset_device=5 * DOUBLE, offset_host=0)
    # Device element 0 -> host element 9.
    stream.transfer_device2host(pointer, target.ctypes.data, DOUBLE,
                                offset_device=0, offset_host=9 * DOUBLE)
    stream.sync()
    np.testing.assert_array_equal(target, [5, 2, 3, 4, 5, -1, -1, -1, -1, 0])


def test_transfer_of_single_bytes_at_odd_offsets(stream):
    source = np.arange(32, dtype=np.uint8)
    pointer = stream.allocate_device_memory(32)
    stream.transfer_host2device(source.ctypes.data, pointer, 32)
    target = np.zeros(3, dtype=np.uint8)
    stream.transfer_device2host(pointer, target.ctypes.data, 3, offset_device=31 - 2, offset_host=0)
    stream.sync()
    np.testing.assert_array_equal(target, [29, 30, 31])


def test_device_to_device_with_offsets(stream):
    source = host_array(np.arange(8))
    src = stream.allocate_device_memory(8 * DOUBLE)
    dst = stream.allocate_device_memory(8 * DOUBLE)
    # Raw-address transfers are asynchronous: host buffers must outlive them.
    zeros = np.zeros(8)
    stream.transfer_host2device(zeros.ctypes.data, dst, 8 * DOUBLE)
    stream.transfer_host2device(source.ctypes.data, src, 8 * DOUBLE)
    stream.transfer_device2device(src, dst, 3 * DOUBLE,
                                  offset_device_src=4 * DOUBLE, offset_device_dst=1 * DOUBLE)
    target = np.empty(8)
    stream.transfer_device2host(dst, target.ctypes.data, 8 * DOUBLE)
    stream.sync()
    np.testing.assert_array_equal(target, [0, 4, 5, 6, 0, 0, 0, 0])


def test_device_to_device_within_one_allocation(stream):
    source = host_array(np.arange(6))
    pointer = stream.allocate_device_memory(6 * DOUBLE)
    stream.transfer_host2device(source.ctypes.data, pointer, 6 * DOUBLE)
    stream.transfer_device2device(pointer, pointer, 2 * DOUBLE,
                                  offset_device_src=0, offset_device_dst=4 * DOUBLE)
    target = np.empty(6)
    stream.transfer_device2host(pointer, target.ctypes.data, 6 * DOUBLE)
    stream.sync()
    np.testing.assert_array_equal(target, [0, 1, 2, 3, 0, 1])


def test_transfer_exactly_to_the_end_is_allowed(stream):
    pointer = stream.allocate_device_memory(16)
    source = np.arange(16, dtype=np.uint8)
    stream.transfer_host2device(source.ctypes.data, pointer, 4, offset_device=12)
    stream.sync()


def test_kernel_on_device_memory_then_transfer_back(stream, lib):
    source = host_array(np.arange(5))
    pointer = stream.allocate_device_memory(source.nbytes)
    stream.transfer_host2device(source.ctypes.data, pointer, source.nbytes)
    stream.invoke(lib.scale_double, pointer, 5, 3.0)
    target = np.zeros(5)
    stream.transfer_device2host(pointer, target.ctypes.data, source.nbytes)
    stream.sync()
    np.testing.assert_array_equal(target, source * 3)


def test_programs_may_set_attributes_on_pointers(stream):
    pointer = stream.allocate_device_memory(64)
    # PyFR stores the translated address on the pointer object.
    pointer.dev_ptr = stream.translate_device_pointer(pointer)
    pointer.anything_else = "kept"
    assert pointer.dev_ptr == stream.translate_device_pointer(pointer)
    assert pointer.anything_else == "kept"


def test_explicit_deallocate(stream, lib, usable):
    pointer = stream.allocate_device_memory(256)
    stream.deallocate_device_memory(pointer)
    stream.sync()
    usable()


def test_sticky_memory_can_be_used_and_freed(stream):
    pointer = stream.allocate_device_memory(64, sticky=True)
    source = host_array([1.0, 2.0])
    stream.transfer_host2device(source.ctypes.data, pointer, 16)
    target = np.zeros(2)
    stream.transfer_device2host(pointer, target.ctypes.data, 16)
    stream.sync()
    np.testing.assert_array_equal(target, source)
    stream.deallocate_device_memory(pointer)
    stream.sync()


def test_free_is_stream_ordered(stream, lib):
    # The kernel sleeps before it writes; deallocating right after the
    # invoke must not pull the memory out from under it.
    pointer = stream.allocate_device_memory(4 * DOUBLE)
    keep = stream.allocate_device_memory(4 * DOUBLE)
    stream.invoke(lib.sleep_then_fill, pointer, 4, 7.0, 100)
    stream.transfer_device2device(pointer, keep, 4 * DOUBLE)
    stream.deallocate_device_memory(pointer)
    target = np.zeros(4)
    stream.transfer_device2host(keep, target.ctypes.data, 4 * DOUBLE)
    stream.sync()
    np.testing.assert_array_equal(target, np.full(4, 7.0))


def test_garbage_collected_pointers_are_freed(device, stream):
    # Each allocation takes over a third of the device's memory, so the
    # fourth would fail unless dropped pointers really give their memory
    # back, whatever the device's size.
    size = device.memory_total // 3 + 1
    used = device.memory_used
    for _ in range(8):
        pointer = stream.allocate_device_memory(size)
        del pointer
        gc.collect()
    stream.sync()
    assert device.memory_used == used


def test_used_after_free_is_an_offload_error(stream, usable):
    pointer = stream.allocate_device_memory(64)
    stream.deallocate_device_memory(pointer)
    with pytest.raises(pymic.OffloadError):
        stream.transfer_host2device(np.zeros(8).ctypes.data, pointer, 64)
    usable()


def test_double_free_is_an_offload_error(stream, usable):
    pointer = stream.allocate_device_memory(64)
    stream.deallocate_device_memory(pointer)
    with pytest.raises(pymic.OffloadError):
        stream.deallocate_device_memory(pointer)
    stream.sync()
    usable()


def test_double_free_of_sticky_memory_is_an_offload_error(stream, usable):
    pointer = stream.allocate_device_memory(64, sticky=True)
    stream.deallocate_device_memory(pointer)
    with pytest.raises(pymic.OffloadError):
        stream.deallocate_device_memory(pointer)
    usable()


@pytest.mark.parametrize("nbytes", [0, -1, -4096])
def test_allocate_nonpositive_is_a_value_error(stream, usable, nbytes):
    with pytest.raises(ValueError):
        stream.allocate_device_memory(nbytes)
    usable()


# Floats are byte counts if integral (pyMIC programs compute nbytes / 2),
# else a ValueError: see test_pymic_compat.py.
@pytest.mark.parametrize("nbytes", ["64", None, b"64", [64]])
def test_allocate_non_number_is_a_type_error(stream, usable, nbytes):
    with pytest.raises(TypeError):
        stream.allocate_device_memory(nbytes)
    usable()


@pytest.mark.parametrize("alignment", [3, 48, 0 - 64])
def test_allocate_bad_alignment_is_a_value_error(stream, usable, alignment):
    with pytest.raises(ValueError):
        stream.allocate_device_memory(64, alignment=alignment)
    usable()


def test_allocate_more_than_the_device_holds_is_an_offload_error(stream, usable):
    with pytest.raises(pymic.OffloadError):
        stream.allocate_device_memory(1 << 60)
    usable()


class TestBadTransfers:
    """Every malformed transfer raises ValueError and enqueues nothing."""

    SIZE = 64

    @pytest.fixture
    def pointers(self, stream):
        return (stream.allocate_device_memory(self.SIZE),
                stream.allocate_device_memory(self.SIZE))

    @pytest.fixture
    def host(self):
        return np.zeros(self.SIZE, dtype=np.uint8)

    @pytest.mark.parametrize("nbytes", [0, -8])
    def test_nonpositive_size(self, stream, pointers, host, usable, nbytes):
        src, dst = pointers
        with pytest.raises(ValueError):
            stream.transfer_host2device(host.ctypes.data, src, nbytes)
        with pytest.raises(ValueError):
            stream.transfer_device2host(src, host.ctypes.data, nbytes)
        with pytest.raises(ValueError):
            stream.transfer_device2device(src, dst, nbytes)
        usable()

    def test_negative_offsets(self, stream, pointers, host, usable):
        src, dst = pointers
        with pytest.raises(ValueError):
            stream.transfer_host2device(host.ctypes.data, src, 8, offset_host=-8)
        with pytest.raises(ValueError):
            stream.transfer_host2device(host.ctypes.data, src, 8, offset_device=-8)
        with pytest.raises(ValueError):
            stream.transfer_device2host(src, host.ctypes.data, 8, offset_device=-1)
        with pytest.raises(ValueError):
            stream.transfer_device2host(src, host.ctypes.data, 8, offset_host=-1)
        with pytest.raises(ValueError):
            stream.transfer_device2device(src, dst, 8, offset_device_src=-8)
        with pytest.raises(ValueError):
            stream.transfer_device2device(src, dst, 8, offset_device_dst=-8)
        usable()

    def test_beyond_the_allocation(self, stream, pointers, host, usable):
        src, dst = pointers
        with pytest.raises(ValueError):
            stream.transfer_host2device(host.ctypes.data, src, self.SIZE + 1)
        with pytest.raises(ValueError):
            stream.transfer_host2device(host.ctypes.data, src, 8, offset_device=self.SIZE - 7)
        with pytest.raises(ValueError):
            stream.transfer_device2host(src, host.ctypes.data, self.SIZE + 8)
        with pytest.raises(ValueError):
            stream.transfer_device2host(src, host.ctypes.data, 1, offset_device=self.SIZE)
        with pytest.raises(ValueError):
            stream.transfer_device2device(src, dst, 16, offset_device_src=self.SIZE - 8)
        with pytest.raises(ValueError):
            stream.transfer_device2device(src, dst, 16, offset_device_dst=self.SIZE - 8)
        usable()

    def test_bad_range_leaves_memory_untouched(self, stream, pointers, usable):
        src, _ = pointers
        ones = np.ones(self.SIZE, dtype=np.uint8)
        stream.transfer_host2device(ones.ctypes.data, src, self.SIZE)
        with pytest.raises(ValueError):
            stream.transfer_host2device(np.zeros(2 * self.SIZE, dtype=np.uint8).ctypes.data,
                                        src, 2 * self.SIZE)
        target = np.zeros(self.SIZE, dtype=np.uint8)
        stream.transfer_device2host(src, target.ctypes.data, self.SIZE)
        stream.sync()
        assert (target == 1).all()
        usable()

    def test_not_a_device_pointer(self, stream, host, usable):
        for bad in ("pointer", 3.5, object()):
            with pytest.raises(TypeError):
                stream.transfer_host2device(host.ctypes.data, bad, 8)
        usable()

    def test_host_pointer_must_be_an_int(self, stream, pointers, usable):
        src, _ = pointers
        for bad in ("0x1000", 2.0, None):
            with pytest.raises(TypeError):
                stream.transfer_host2device(bad, src, 8)
        usable()


def test_pointer_dropped_while_queued_work_uses_it(stream, lib, usable):
    pointer = stream.allocate_device_memory(4 * DOUBLE)
    keep = stream.allocate_device_memory(4 * DOUBLE)
    stream.invoke(lib.sleep_then_fill, pointer, 4, 3.0, 100)
    stream.transfer_device2device(pointer, keep, 4 * DOUBLE)
    del pointer
    gc.collect()
    target = np.zeros(4)
    stream.transfer_device2host(keep, target.ctypes.data, 4 * DOUBLE)
    stream.sync()
    np.testing.assert_array_equal(target, np.full(4, 3.0))
    usable()


def test_translate_synchronizes_the_stream(stream, lib):
    pointer = stream.allocate_device_memory(4 * DOUBLE)
    stream.invoke(lib.sleep_then_fill, pointer, 4, 1.0, 100)
    before = stream.record_event()
    stream.translate_device_pointer(pointer)
    assert before.done


def test_pointer_keeps_its_stream_and_works_on_another(device, stream, usable):
    temporary = device.create_stream()
    stream_alive = weakref.ref(temporary)
    pointer = temporary.allocate_device_memory(4 * DOUBLE)
    del temporary
    gc.collect()
    # The pointer frees its memory in its stream's order, so it holds the
    # stream; the memory belongs to the device and works on any stream.
    assert stream_alive() is not None
    source = np.arange(4.0)
    target = np.zeros(4)
    stream.transfer_host2device(source.ctypes.data, pointer, 4 * DOUBLE)
    stream.transfer_device2host(pointer, target.ctypes.data, 4 * DOUBLE)
    stream.sync()
    np.testing.assert_array_equal(target, source)
    del pointer
    gc.collect()
    # The last reference gone, the stream is destroyed.
    assert stream_alive() is None
    usable()
