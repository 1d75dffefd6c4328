"""Every bad input API.md names raises the documented exception, and pymic
stays usable afterwards: after each error a normal invoke still works."""

import os
import textwrap

import numpy as np
import pytest

import pymic
from helpers import assert_usable, run_python


def bad_kernel_argument(stream, lib, kernel_dir):
    stream.invoke(lib.store_double, np.zeros(1), "not a scalar")


def kernel_is_a_string(stream, lib, kernel_dir):
    stream.invoke("scale_double", np.zeros(1), 1, 1.0)


def too_many_arguments(stream, lib, kernel_dir):
    stream.invoke(lib.args_128, np.zeros(129, dtype=np.int64), *range(1, 129))


def far_too_many_arguments(stream, lib, kernel_dir):
    stream.invoke(lib.empty_kernel, *([1.0] * 1000))


def bind_a_list(stream, lib, kernel_dir):
    stream.bind([1.0, 2.0])


def bind_non_contiguous(stream, lib, kernel_dir):
    stream.bind(np.zeros((4, 4))[:, ::2])


def add_mismatched_shapes(stream, lib, kernel_dir):
    stream.bind(np.ones(3)) + stream.bind(np.ones(4))


def add_mismatched_dtypes(stream, lib, kernel_dir):
    stream.bind(np.ones(3)) + np.ones(3, dtype=np.float32)


def reshape_to_other_size(stream, lib, kernel_dir):
    stream.bind(np.ones(6)).reshape(5)


def slice_with_step(stream, lib, kernel_dir):
    stream.bind(np.ones(6))[::3] = 0.0


def allocate_zero_bytes(stream, lib, kernel_dir):
    stream.allocate_device_memory(0)


def allocate_negative_bytes(stream, lib, kernel_dir):
    stream.allocate_device_memory(-64)


def transfer_beyond_allocation(stream, lib, kernel_dir):
    pointer = stream.allocate_device_memory(64)
    stream.transfer_host2device(np.zeros(16).ctypes.data, pointer, 128)


def transfer_negative_offset(stream, lib, kernel_dir):
    pointer = stream.allocate_device_memory(64)
    stream.transfer_device2host(pointer, np.zeros(8).ctypes.data, 8, offset_device=-8)


def transfer_zero_bytes(stream, lib, kernel_dir):
    pointer = stream.allocate_device_memory(64)
    stream.transfer_device2device(pointer, pointer, 0)


def transfer_offset_past_end(stream, lib, kernel_dir):
    pointer = stream.allocate_device_memory(64)
    stream.transfer_device2device(pointer, pointer, 8, offset_device_src=64)


def unknown_kernel(stream, lib, kernel_dir):
    lib.this_kernel_does_not_exist


def unknown_library(stream, lib, kernel_dir):
    stream.get_device().load_library("libthis_library_does_not_exist.so")


def unknown_library_by_path(stream, lib, kernel_dir):
    stream.get_device().load_library(str(kernel_dir / "libmissing.so"))


def not_a_library(stream, lib, kernel_dir):
    stream.get_device().load_library(str(kernel_dir / "libbogus.so"))


def library_with_undefined_symbol(stream, lib, kernel_dir):
    stream.get_device().load_library(str(kernel_dir / "libpymicundefined.so"))


def library_name_not_a_string(stream, lib, kernel_dir):
    stream.get_device().load_library(42)


def create_with_unsupported_dtype(stream, lib, kernel_dir):
    stream.zeros(8, dtype=object)


def create_with_bad_order(stream, lib, kernel_dir):
    stream.ones((2, 2), order="X")


def create_with_negative_shape(stream, lib, kernel_dir):
    stream.empty(-3)


def bcast_value_of_another_type(stream, lib, kernel_dir):
    stream.bcast(2.5, 4, dtype=np.int64)


def double_free(stream, lib, kernel_dir):
    pointer = stream.allocate_device_memory(64)
    stream.deallocate_device_memory(pointer)
    stream.deallocate_device_memory(pointer)


def transfer_after_free(stream, lib, kernel_dir):
    pointer = stream.allocate_device_memory(64)
    stream.deallocate_device_memory(pointer)
    stream.transfer_device2host(pointer, np.zeros(8).ctypes.data, 8)


BAD_CALLS = [
    (bad_kernel_argument, TypeError),
    (kernel_is_a_string, TypeError),
    (too_many_arguments, ValueError),
    (far_too_many_arguments, ValueError),
    (bind_a_list, TypeError),
    (bind_non_contiguous, ValueError),
    (add_mismatched_shapes, ValueError),
    (add_mismatched_dtypes, ValueError),
    (reshape_to_other_size, ValueError),
    (slice_with_step, ValueError),
    (allocate_zero_bytes, ValueError),
    (allocate_negative_bytes, ValueError),
    (transfer_beyond_allocation, ValueError),
    (transfer_negative_offset, ValueError),
    (transfer_zero_bytes, ValueError),
    (transfer_offset_past_end, ValueError),
    (unknown_kernel, pymic.OffloadError),
    (unknown_library, pymic.OffloadError),
    (unknown_library_by_path, pymic.OffloadError),
    (not_a_library, pymic.OffloadError),
    (library_with_undefined_symbol, pymic.OffloadError),
    (library_name_not_a_string, TypeError),
    (create_with_unsupported_dtype, TypeError),
    (create_with_bad_order, ValueError),
    (create_with_negative_shape, ValueError),
    (bcast_value_of_another_type, ValueError),
    (double_free, pymic.OffloadError),
    (transfer_after_free, pymic.OffloadError),
]


@pytest.mark.parametrize("bad_call, exception", BAD_CALLS,
                         ids=[call.__name__ for call, _ in BAD_CALLS])
def test_bad_input_raises_and_pymic_stays_usable(stream, lib, kernel_dir, usable,
                                                 bad_call, exception):
    with pytest.raises(exception):
        bad_call(stream, lib, kernel_dir)
    usable()


@pytest.mark.parametrize("bad_call, exception", BAD_CALLS,
                         ids=[call.__name__ for call, _ in BAD_CALLS])
def test_bad_input_on_the_default_stream(default_stream, lib, kernel_dir,
                                         bad_call, exception):
    # pyMIC programs use the default stream: the same errors must leave it usable.
    with pytest.raises(exception):
        bad_call(default_stream, lib, kernel_dir)
    assert_usable(default_stream, lib)


def test_offload_error_message_is_informative(device, kernel_dir):
    with pytest.raises(pymic.OffloadError) as info:
        device.load_library(str(kernel_dir / "libbogus.so"))
    message = str(info.value)
    assert "libbogus.so" in message
    # Not just the file: the reason the loader gave (more than the name).
    assert len(message) > len("libbogus.so") + 10


def test_rejected_invoke_enqueues_nothing(stream, lib, usable):
    # The ndarray would be copied back if anything had been enqueued.
    out = np.full(129, -1, dtype=np.int64)
    with pytest.raises(ValueError):
        stream.invoke(lib.args_128, out, *range(1, 129))
    stream.sync()
    assert (out == -1).all()
    with pytest.raises(TypeError):
        stream.invoke(lib.store_double, out, object())
    stream.sync()
    assert (out == -1).all()
    usable()


def test_many_errors_in_a_row_leave_pymic_usable(stream, lib, kernel_dir, usable):
    for _ in range(50):
        for bad_call, exception in BAD_CALLS:
            with pytest.raises(exception):
                bad_call(stream, lib, kernel_dir)
    usable()


def test_errors_in_one_stream_do_not_disturb_another(device, lib, kernel_dir):
    busy = device.create_stream()
    target = busy.bind(np.zeros(8))
    busy.invoke(lib.sleep_then_fill, target, 8, 6.0, 100)
    other = device.create_stream()
    for bad_call, exception in BAD_CALLS:
        with pytest.raises(exception):
            bad_call(other, lib, kernel_dir)
    result = target.update_host().array
    busy.sync()
    np.testing.assert_array_equal(result, np.full(8, 6.0))


WRONG_DEVICE_SETUP = textwrap.dedent("""
    import numpy as np
    import pymic

    assert pymic.number_of_devices() == 2, pymic.number_of_devices()
    first, second = pymic.devices[0], pymic.devices[1]
    lib_first = first.load_library(LIBRARY)
    lib_second = second.load_library(LIBRARY)
    stream_first = first.get_default_stream()
    stream_second = second.get_default_stream()
    offload = stream_first.bind(np.ones(3))
    pointer = stream_first.allocate_device_memory(64)

    def still_usable():
        for stream, lib in ((stream_first, lib_first), (stream_second, lib_second)):
            data = np.ones(4)
            stream.invoke(lib.scale_double, data, 4, 2.0)
            assert (data == 2.0).all(), data

    try:
        BAD_CALL()
    except EXPECTED as error:
        print("raised", type(error).__name__, error)
    else:
        raise SystemExit("did not raise")
    still_usable()
    print("ALL OK")
""")

# Everything of device 0 used with device 1, and the exceptions accepted.
WRONG_DEVICE_CALLS = {
    "kernel_on_another_devices_stream":
        ("lambda: stream_second.invoke(lib_first.scale_double, np.ones(2), 2, 1.0)",
         "pymic.OffloadError"),
    "kernel_of_device_1_on_device_0":
        ("lambda: stream_first.invoke(lib_second.empty_kernel)", "pymic.OffloadError"),
    "assign_stream_to_another_device":
        ("lambda: offload.assign_stream(stream_second)", "ValueError"),
    "transfer_of_another_devices_memory":
        ("lambda: stream_second.transfer_device2host(pointer, np.zeros(8).ctypes.data, 8)",
         "(pymic.OffloadError, ValueError)"),
    "device_pointer_of_another_device_in_invoke":
        ("lambda: stream_second.invoke(lib_second.scale_double, pointer, 8, 1.0)",
         "(pymic.OffloadError, ValueError)"),
    "offload_array_of_another_device_in_invoke":
        ("lambda: stream_second.invoke(lib_second.scale_double, offload, 3, 1.0)",
         "(pymic.OffloadError, ValueError)"),
}


@pytest.mark.parametrize("scenario", list(WRONG_DEVICE_CALLS))
def test_objects_of_another_device(kernel_dir, scenario):
    call, expected = WRONG_DEVICE_CALLS[scenario]
    program = (f"LIBRARY = {str(kernel_dir / 'libpymictest.so')!r}\n"
               + WRONG_DEVICE_SETUP.replace("BAD_CALL()", f"({call})()")
                                   .replace("EXPECTED", expected))
    result = run_python(program, env={"PYMIC_DEVICES": "host*2"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ALL OK" in result.stdout


# One kind of error, one class: a size, offset or range that does not fit
# raises OffloadValueError whichever layer (the extension's checks before
# anything is queued, or the engine) finds it.
def offset_past_end_host2device(stream):
    pointer = stream.allocate_device_memory(64)
    stream.transfer_host2device(np.zeros(8), pointer, 8, offset_device=64)


def offset_past_end_device2host(stream):
    pointer = stream.allocate_device_memory(64)
    stream.transfer_device2host(pointer, np.zeros(8), 8, offset_device=60)


def offset_past_end_device2device(stream):
    pointer = stream.allocate_device_memory(64)
    stream.transfer_device2device(pointer, pointer, 8, offset_device_dst=64)


def negative_offset(stream):
    pointer = stream.allocate_device_memory(64)
    stream.transfer_host2device(np.zeros(8), pointer, 8, offset_host=-1)


def offset_not_whole(stream):
    pointer = stream.allocate_device_memory(64)
    stream.transfer_host2device(np.zeros(8), pointer, 8, offset_device=8.5)


def host_range_past_end(stream):
    pointer = stream.allocate_device_memory(64)
    stream.transfer_device2host(pointer, np.zeros(1), 64)


def null_host_pointer(stream):
    pointer = stream.allocate_device_memory(64)
    stream.transfer_device2host(pointer, 0, 64)


def array_offset_past_end(stream):
    array = stream.bind(np.zeros(8))
    array._doffset = 1024


def negative_size(stream):
    stream.allocate_device_memory(-64)


def alignment_not_power_of_two(stream):
    stream.allocate_device_memory(64, alignment=24)


OUT_OF_RANGE_CALLS = [offset_past_end_host2device, offset_past_end_device2host,
                      offset_past_end_device2device, negative_offset, offset_not_whole,
                      host_range_past_end, null_host_pointer, array_offset_past_end,
                      negative_size, alignment_not_power_of_two]


@pytest.mark.parametrize("bad_call", OUT_OF_RANGE_CALLS,
                         ids=[call.__name__ for call in OUT_OF_RANGE_CALLS])
def test_out_of_range_values_raise_offload_value_error_everywhere(stream, lib, bad_call):
    with pytest.raises(ValueError) as info:
        bad_call(stream)
    assert type(info.value) is pymic.OffloadValueError, repr(info.value)
    assert_usable(stream, lib)


# What the user did, not which C function failed.
MESSAGE_PROGRAM = """
import re
import numpy as np
import pymic

messages = []
def failing(call):
    try:
        call()
    except pymic.OffloadError as error:
        messages.append(str(error))
    else:
        raise AssertionError("no error")

device = pymic.devices[0]
stream = device.create_stream()
lib = device.load_library(LIBRARY)
buffer = stream.bind(np.zeros(100))
stream.invoke(lib.fill_ones, buffer, np.int64(101))         # overrun
failing(stream.sync)
sync_message = messages[-1]
stream.invoke(lib.fill_ones, buffer, np.int64(101))
failing(device.sync)
failing(lambda: stream.allocate_device_memory(1 << 62))
failing(lambda: pymic.OffloadDevice(99))
failing(lambda: pymic.OffloadEvent().sync())
pointer = stream.allocate_device_memory(64)
stream.deallocate_device_memory(pointer)
failing(lambda: stream.deallocate_device_memory(pointer))
failing(lambda: device.load_library(BROKEN))               # an undefined symbol
failing(lambda: lib.get_kernel("no_such_kernel"))
for message in messages:
    assert not re.search(r"pymic_[a-z_]+:", message), message
number = re.match(r"sync of stream (\\d+) on device 0: ", sync_message)
assert number, sync_message
assert "kernel 'fill_ones'" in sync_message, sync_message
assert f"sync of device 0: stream {number.group(1)}: " in messages[1], messages[1]
print("ok")
"""


def test_messages_say_what_the_user_did(kernel_dir):
    program = (f"LIBRARY = {str(kernel_dir / 'libpymictest.so')!r}\n"
               f"BROKEN = {str(kernel_dir / 'libpymicundefined.so')!r}\n" + MESSAGE_PROGRAM)
    result = run_python(program, env={"PYMIC_CHECK": "bounds"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"


def test_streams_are_numbered_as_messages_name_them(device):
    first, second = device.create_stream(), device.create_stream()
    assert second.number == first.number + 1
    assert f"<OffloadStream {first.number} on device {device.device_id}" in repr(first)


STREAM_LIMIT_PROGRAM = """
import pymic

device = pymic.devices[0]
streams = []
try:
    for _ in range(1000):
        streams.append(device.create_stream())
except pymic.OffloadError as error:
    message = str(error)
else:
    raise AssertionError("no limit on streams")
assert message.startswith("stream creation on device 0: a process device has at most"), message
print("ok")
"""


def test_backend_messages_say_what_the_user_did_too():
    if not os.path.exists(os.path.join(os.path.dirname(pymic.__file__), "pymic-device")):
        pytest.skip("this build has no process device")
    result = run_python(STREAM_LIMIT_PROGRAM, env={"PYMIC_DEVICES": "proc"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"
