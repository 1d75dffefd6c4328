/*
 * protocol.h -- the messages between a host (libpymic_mpi.so's backend,
 * host.c) and the pymic-device rank that serves one MPI device (device.c).
 *
 * Every message is MPI_BYTE on a communicator that holds only the host
 * and its devices (a spawn's intercommunicator, or under MPMD a
 * duplicate of MPI_COMM_WORLD made in the handshake), so the
 * application's own traffic can never match them.
 *
 *   tag MPIDEV_TAG_CONTROL   host -> device: a control request (memory,
 *                            libraries, streams, reset, quit), served in
 *                            order by the device's main thread; the
 *                            answer comes back on MPIDEV_TAG_REPLY.
 *                            The host sends one at a time per device.
 *   tag MPIDEV_TAG_ECHO      both ways: the messages of a measured MPI
 *                            exchange (ECHO below), nothing else.
 *   tag MPIDEV_TAG_STREAM(i) both ways: the requests of host stream slot
 *                            i (copies, invokes, its end) and their
 *                            answers, served in order by the device
 *                            thread of that slot.  Each receive is
 *                            posted off the way from a request to its
 *                            answer, yet before its message comes in an
 *                            exchange (the host posts the answer's right
 *                            after it sent the request; the device the
 *                            next request's right after it answered), so
 *                            a small message lands in place at once.
 *   tag MPIDEV_TAG_DATA(i)   both ways: the bytes of slot i's copies, in
 *                            chunks, up to MPIDEV_WINDOW of them in flight
 *                            (apart from the requests, so a pre-posted
 *                            receive for a request never takes a chunk).
 *                            MPI's non-overtaking rule (same source, tag
 *                            and communicator) keeps the chunks in order
 *                            without any sequence number.
 *
 * Nothing assumes the two processes share memory or a node: addresses
 * are the device's (never dereferenced by the host), a library is named
 * by its absolute path (a shared file system is assumed, as on clusters)
 * and checked by inode and size there.
 */
#ifndef PYMIC_MPI_PROTOCOL_H
#define PYMIC_MPI_PROTOCOL_H

#include <stdint.h>

#include "pymic.h"

#define MPIDEV_PROTOCOL 8

#define MPIDEV_TAG_CONTROL 1
#define MPIDEV_TAG_REPLY 2
#define MPIDEV_TAG_ECHO 3
#define MPIDEV_TAG_STREAM(slot) (16 + (slot))
#define MPIDEV_TAG_DATA(slot) (16 + MPIDEV_MAX_STREAMS + (slot))

/* Streams one MPI device serves at once (slots of the tag space). */
#define MPIDEV_MAX_STREAMS 256

/* Copies travel in chunks of at most c bytes, which each copy request
 * names (up to 2^31 - 1, an MPI count): this many, or the whole copy as
 * one message -- the host learns per size class which is faster
 * (tuning.h) -- or PYMIC_MPI_CHUNK on the host.  Each chunk lands in
 * device memory directly; up to MPIDEV_WINDOW chunks of a copy are in
 * flight at once, so the next is under way while one completes
 * (measured on Open MPI
 * 4.1 over shared memory: a 64 MiB d2h as one message reached 0.8x of
 * MPI_Send/MPI_Recv of the same bytes; in 4 MiB chunks, 4 in flight,
 * 0.87-0.9x; in 1 MiB chunks, 8 in flight, 1.0-1.1x, and h2d 1.0x).
 * Libraries sent as bytes travel in chunks of this size too. */
#define MPIDEV_CHUNK ((uint64_t)1 << 20)
#define MPIDEV_WINDOW 8

#define MPIDEV_TEXT_MAX 1024

/* The largest message of an ECHO exchange (an MPI count). */
#define MPIDEV_ECHO_MOST ((uint64_t)INT32_MAX)

enum mpidev_op {
    /* control */
    MPIDEV_HELLO = 1, /* a: protocol, b: flags (MPIDEV_FLAG_*), c: the
                         device's generation (see "Points"); answer:
                         value = memory capacity, pad = the device's pid,
                         text = the local device's name, a newline, the
                         device's node (MPI_Get_processor_name)          */
    MPIDEV_ALLOC,     /* a: bytes, b: alignment; answer value = address  */
    MPIDEV_FREE,      /* a: address                                       */
    MPIDEV_LOAD,      /* text: absolute path, a: inode, b: size;
                         answer value = library handle, or status
                         PYMIC_ERR_LIBRARY with value MPIDEV_NOT_SAME
                         when the device does not see that file there    */
    MPIDEV_LOAD_BYTES, /* text: the library's name, a: size; the file's
                         bytes follow on the control tag (in chunks of
                         MPIDEV_CHUNK); the device loads its own copy;
                         answer value = library handle                   */
    MPIDEV_FIND,      /* a: library handle, text: name;
                         answer value = kernel handle                    */
    MPIDEV_UNLOAD,    /* a: library handle                                */
    MPIDEV_START,     /* slot: start serving the stream slot              */
    MPIDEV_RESET,     /* reset the local device; a: the device's
                         generation from now on (see "Points")           */
    MPIDEV_QUIT,      /* end the device process (answer, then it leaves)  */
    MPIDEV_CLOCK,     /* answer value = the device's clock (CLOCK_MONOTONIC
                         ns): the host reads it against its own in a round
                         trip, to place the device's spans in its trace   */
    MPIDEV_ECHO,      /* a: exchanges, b: bytes each way to the device,
                         c: back (each 1 to MPIDEV_ECHO_MOST); answered
                         at once (or refused: no memory), then the main
                         thread receives `a` messages of b bytes on
                         MPIDEV_TAG_ECHO (MPI_Recv) and answers each with
                         c bytes (MPI_Send): its first c bytes, zeros
                         past them (the buffer is kept for the next ECHO
                         of the same b and c).  The plain MPI exchanges
                         between these two processes, for
                         pymic_mpi_round_trip and pymic_mpi_exchange     */
    /* stream (on the slot's tag) */
    MPIDEV_H2D,       /* a: address, b: bytes, c: chunk bytes; the data
                         follows in chunks (data tag), or up to
                         MPIDEV_INLINE_BYTES right after the request's
                         head in the same message; then the answer       */
    MPIDEV_D2H,       /* a: address, b: bytes, c: chunk bytes; the data
                         in chunks (data tag) at once, then the answer --
                         or only the answer if no data is sent (a failure,
                         a skip); the host posts the receives of the
                         answer and of the first chunks before it asks.
                         Up to MPIDEV_INLINE_BYTES go right after the
                         answer's head, in the one message              */
    MPIDEV_D2D,       /* a: destination, b: source, c: bytes (overlap ok) */
    MPIDEV_INVOKE,    /* mpidev_invoke below                              */
    MPIDEV_STOP,      /* the slot's thread ends (a: 1 = no answer)        */
    /* Events resolved on the device (see "Points" below). */
    MPIDEV_RECORD,    /* a: point, b: MPIDEV_RECORD_* flags; c: points
                         to forget, as
                         c uint64_t after the head (up to
                         MPIDEV_FORGET_MAX); answered once the point is
                         marked (every request before it was served),
                         the answer's value the device's CLOCK_MONOTONIC
                         then (ns): the host times events by it
                         (protocol 8)                                   */
    MPIDEV_WAIT,      /* a: point, b: the device's generation as the host
                         saw it, c and forget as RECORD; answered once
                         the point is marked: OK, MPIDEV_WAIT_FAILED, or a
                         failure (abandoned by a reset or the end)      */
    MPIDEV_OP_UNKNOWN /* (none of the above)                             */
};

/* Points: a wait between two streams of one device is resolved on the
 * device.  The host names each event record of a stream of this device by
 * a number (the engine's mark number, unique in the host process); the
 * recording slot's thread marks that point when it serves the RECORD --
 * every request before it on its stream has then been carried out --
 * failed if one of them failed in this epoch (the device skips the rest of
 * it) or the host says a failure came before it.  A waiting slot's thread
 * serves WAIT by waiting until the point is marked, so the host's worker
 * sends what follows the wait at once, with no round trip through the
 * host.  A point marked failed fails the wait (MPIDEV_WAIT_FAILED), and the
 * waiting stream skips the rest of that epoch, as after a failure of its
 * own.  A point exists from its RECORD or first WAIT until the host
 * forgets it (its mark is freed: no wait for it can come any more); the
 * forgotten points ride on the next RECORD or WAIT of any stream of the
 * device, so the device holds at most the points the host holds plus
 * those forgotten since.  A reset (and the device's end) abandons the
 * waits under way and the points not yet marked, and every wait sent
 * before it, even one served after it (each WAIT carries the generation
 * -- the count of the device's resets -- the host knew when it sent it;
 * HELLO and RESET say what it is from then on), so no wait is left
 * hanging. */
#define MPIDEV_WAIT_FAILED 2
/* RECORD's b: a failure came before it; no answer (sent while the device
 * is lost, so a wait sent meanwhile is not left hanging). */
#define MPIDEV_RECORD_FAILED 1u
#define MPIDEV_RECORD_NO_ANSWER 2u
#define MPIDEV_FORGET_MAX 64

/* A stream request whose op has this bit asks for the device's span of
 * the request (a traced command): its answer then carries span_start and
 * span_end (the device's clock).  Without the bit nothing of it is
 * measured or sent. */
#define MPIDEV_SPAN 0x80000000u

/* The answer's status of a stream request the device did not carry out
 * because one before it on the stream failed.  The host keeps invokes in
 * flight (several sent before the first answer is back), so a failure may
 * be followed by requests sent before the host knew of it; the engine's
 * rule is that nothing after a failed command runs until the failure has
 * been reported (failure.c).  Each stream request carries the host's
 * count of failures it has seen on that stream (`epoch`), and the device,
 * once a request failed, skips the requests of that same epoch: those the
 * host sent before it saw the failure.  (Statuses of the engine are 0 or
 * negative.) */
#define MPIDEV_SKIPPED 1

/* LOAD's answer when the path does not name the host's file on the
 * device's node (no shared file system there, or the file was replaced
 * since the host opened it): the host sends the bytes (LOAD_BYTES). */
#define MPIDEV_NOT_SAME 1

/* HELLO flags: the host's settings the device's engine takes over. */
#define MPIDEV_FLAG_CHECK_BOUNDS 1u

typedef struct mpidev_request {
    uint32_t op;
    uint32_t slot;
    uint64_t a, b, c;
    uint32_t epoch; /* stream requests: see MPIDEV_SKIPPED */
    uint32_t pad;
    char text[MPIDEV_TEXT_MAX]; /* control requests only */
} mpidev_request;

/* Bytes of a request actually sent: the text only when it is used. */
#define MPIDEV_REQUEST_HEAD (sizeof(mpidev_request) - MPIDEV_TEXT_MAX)

/* An invoke, one message: this head, then per argument an mpidev_arg,
 * then `scalar_bytes` bytes of scalars.  An argument is a value (a device
 * address, or any pointer value, passed unchanged) or, for a scalar,
 * where its bytes lie in the scalars and how many there are. */
typedef struct mpidev_invoke_head {
    uint32_t op; /* MPIDEV_INVOKE */
    int32_t nargs;
    uint32_t scalar_bytes;
    uint32_t epoch; /* see MPIDEV_SKIPPED */
    uint64_t kernel;
} mpidev_invoke_head;

typedef struct mpidev_arg {
    uint64_t value;
    uint32_t scalar_offset;
    uint32_t scalar_size; /* 0: `value` is the argument */
} mpidev_arg;

#define MPIDEV_INVOKE_MAX                                                                      \
    (sizeof(mpidev_invoke_head) + PYMIC_MAX_KERNEL_ARGS * sizeof(mpidev_arg) +                 \
     PYMIC_MAX_SCALAR_BYTES)

typedef struct mpidev_reply {
    int32_t status; /* PYMIC_OK or the device engine's status */
    uint32_t pad;
    uint64_t value;
    uint64_t span_start, span_end; /* MPIDEV_SPAN asked: the request's span */
    char text[MPIDEV_TEXT_MAX]; /* the reason when status != PYMIC_OK */
} mpidev_reply;

/* Bytes of an answer actually sent: status and value; the span when it
 * was asked for; the text (after the span's place) only with a failure. */
#define MPIDEV_REPLY_SHORT (sizeof(mpidev_reply) - MPIDEV_TEXT_MAX - 2 * sizeof(uint64_t))
#define MPIDEV_REPLY_HEAD (sizeof(mpidev_reply) - MPIDEV_TEXT_MAX)

/* Copies of at most this many bytes travel inside their request (h2d) or
 * their answer (d2h): one message each way, as a small exchange of MPI's
 * own, instead of a request, the data and an answer. */
#define MPIDEV_INLINE_BYTES 4096

/* The largest message on a stream's tag, either way: an invoke, a request
 * or an answer with a copy's bytes inline, an answer with its reason. */
#define MPIDEV_MAX2(x, y) ((x) > (y) ? (x) : (y))
#define MPIDEV_STREAM_MAX                                                                      \
    MPIDEV_MAX2(MPIDEV_MAX2(MPIDEV_INVOKE_MAX, sizeof(mpidev_request)),                        \
                MPIDEV_MAX2(MPIDEV_REQUEST_HEAD, MPIDEV_REPLY_HEAD) + MPIDEV_INLINE_BYTES)

#endif /* PYMIC_MPI_PROTOCOL_H */
