/*
 * echo_fw.c - a small OpenAMP remote ("firmware") for pyopenamp's virtual machine.
 *
 * It is what a remote processor runs: its ELF carries a real .resource_table, it plays
 * the virtio DEVICE role of an rpmsg device over the host's shared memory (as the C
 * library's remote does on the Linux generic machine) and runs the rpmsg-echo
 * application: it waits for the host's DRIVER_OK, announces
 * "rpmsg-openamp-demo-channel" from address 0x400 and sends every message it receives
 * there back to its sender.
 *
 * It is written from the wire format alone, without OpenAMP or libmetal code, so that
 * it cross-checks pyopenamp's driver side.  Like bare-metal firmware it has no C
 * library: a few raw Linux system calls are all it needs, and without libc the ELF
 * headers need not be mapped, which is what lets the resource table have a segment of
 * its own at exactly 0x70000 (see echo_fw.ld).  The contract with the host (environment,
 * memory, kicks, exit codes) and the build command are in README.md next to this file.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* ---- wire formats (OpenAMP remoteproc.h, virtio_ring.h, rpmsg_internal.h) ---------- */

#define RSC_CARVEOUT 0
#define RSC_TRACE 2
#define RSC_VDEV 3
#define VIRTIO_ID_RPMSG 7
#define VIRTIO_RPMSG_F_NS 0 /* feature bit: name service */
#define VIRTIO_CONFIG_S_DRIVER_OK 0x04
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_USED_F_NO_NOTIFY 1

#define RPMSG_NS_ADDR 0x35
#define RPMSG_NS_DESTROY 1
#define ECHO_ADDR 0x400
#define ECHO_SERVICE "rpmsg-openamp-demo-channel"
#define SHUTDOWN_MSG 0xEF56A55Au

struct fw_rsc_carveout {
	uint32_t type, da, pa, len, flags, reserved;
	char name[32];
};

struct fw_rsc_trace {
	uint32_t type, da, len, reserved;
	char name[32];
};

struct fw_rsc_vdev_vring {
	uint32_t da, align, num, notifyid, reserved;
};

struct fw_rsc_vdev { /* followed by num_of_vrings vrings, then config_len bytes */
	uint32_t type, id, notifyid, dfeatures, gfeatures, config_len;
	uint8_t status, num_of_vrings, reserved[2];
};

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

struct vring_used_elem {
	uint32_t id, len;
};

struct rpmsg_hdr {
	uint32_t src, dst, reserved;
	uint16_t len, flags;
};

struct rpmsg_ns_msg {
	char name[32];
	uint32_t addr, flags;
};

_Static_assert(sizeof(struct fw_rsc_carveout) == 56, "carveout layout");
_Static_assert(sizeof(struct fw_rsc_trace) == 48, "trace layout");
_Static_assert(sizeof(struct fw_rsc_vdev) == 28, "vdev layout");
_Static_assert(sizeof(struct fw_rsc_vdev_vring) == 20, "vring layout");
_Static_assert(sizeof(struct rpmsg_hdr) == 16, "rpmsg header layout");
_Static_assert(sizeof(struct rpmsg_ns_msg) == 40, "name-service layout");

/* ---- our resource table: the ELF section .resource_table, linked at 0x70000 -------- */

struct resource_table {
	uint32_t ver, num, reserved[2];
	uint32_t offset[3];
	struct fw_rsc_carveout carveout;
	struct fw_rsc_trace trace;
	struct fw_rsc_vdev vdev;
	struct fw_rsc_vdev_vring vring[2];
};

_Static_assert(sizeof(struct resource_table) == 200, "no padding in the table");

__attribute__((section(".resource_table"), used))
const struct resource_table resource_table = {
	.ver = 1,
	.num = 3,
	.offset = {
		offsetof(struct resource_table, carveout),
		offsetof(struct resource_table, trace),
		offsetof(struct resource_table, vdev),
	},
	.carveout = {RSC_CARVEOUT, 0x10000, 0x10000, 0x40000, 0, 0, "vdev0buffer"},
	.trace = {RSC_TRACE, 0x60000, 0x1000, 0, "trace0"},
	.vdev = {RSC_VDEV, VIRTIO_ID_RPMSG, 0, 1u << VIRTIO_RPMSG_F_NS, 0, 0, 0, 2, {0, 0}},
	.vring = {
		{0x4000, 0x1000, 256, 1, 0}, /* vring 0: device -> driver (we send) */
		{0x8000, 0x1000, 256, 2, 0}, /* vring 1: driver -> device (we receive) */
	},
};

/* ---- a minimal runtime: x86-64 Linux system calls, memcpy/memset, formatting -------- */

#define SYS_read 0
#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_poll 7
#define SYS_lseek 8
#define SYS_mmap 9
#define SYS_rt_sigaction 13
#define SYS_nanosleep 35
#define SYS_socket 41
#define SYS_connect 42
#define SYS_sendto 44
#define SYS_fcntl 72
#define SYS_clock_gettime 228
#define SYS_exit_group 231

#define O_RDWR 02
#define O_NONBLOCK 04000
#define O_CLOEXEC 02000000
#define SEEK_END 2
#define PROT_READ 1
#define PROT_WRITE 2
#define MAP_SHARED 1
#define AF_UNIX 1
#define SOCK_STREAM 1
#define SOCK_CLOEXEC 02000000
#define F_GETFL 3
#define F_SETFL 4
#define POLLIN 1
#define MSG_NOSIGNAL 0x4000
#define CLOCK_MONOTONIC 1
#define SIGPIPE 13
#define SIG_IGN 1
#define EPIPE 32
#define ECONNRESET 104

static long syscall6(long n, long a, long b, long c, long d, long e, long f)
{
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret; /* -errno on failure */
}

#define sys3(n, a, b, c) syscall6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)

/* gcc may call these for struct copies even in a freestanding program */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);

void *memcpy(void *dst, const void *src, size_t n)
{
	void *d = dst;

	__asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
	return dst;
}

void *memset(void *dst, int c, size_t n)
{
	void *d = dst;

	__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	return dst;
}

static size_t str_len(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

static __attribute__((noreturn)) void sys_exit(int code)
{
	for (;;)
		sys3(SYS_exit_group, code, 0, 0);
}

static int64_t now_ms(void)
{
	struct { long sec, nsec; } ts = {0, 0};

	sys3(SYS_clock_gettime, CLOCK_MONOTONIC, &ts, 0);
	return (int64_t)ts.sec * 1000 + ts.nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct { long sec, nsec; } ts = {ms / 1000, ms % 1000 * 1000000};

	sys3(SYS_nanosleep, &ts, 0, 0);
}

/* A tiny vsnprintf: %s, %u, %x, %lu, %lx and %%.  Always NUL-terminates. */
static size_t vformat(char *out, size_t cap, const char *f, va_list ap)
{
	size_t n = 0;

	for (; *f; f++) {
		char digits[24];
		const char *s = digits;
		size_t len = 0;

		if (*f != '%') {
			s = f;
			len = 1;
		} else if (*++f == 's') {
			s = va_arg(ap, const char *);
			len = str_len(s);
		} else if (*f == '%') {
			s = "%";
			len = 1;
		} else {
			int is_long = *f == 'l';
			unsigned long v, base;

			if (is_long)
				f++;
			base = *f == 'x' ? 16 : 10;
			v = is_long ? va_arg(ap, unsigned long) : va_arg(ap, unsigned int);
			do { /* digits backwards, then flipped below */
				digits[len++] = "0123456789abcdef"[v % base];
				v /= base;
			} while (v);
			for (size_t i = 0; i < len / 2; i++) {
				char t = digits[i];

				digits[i] = digits[len - 1 - i];
				digits[len - 1 - i] = t;
			}
		}
		for (size_t i = 0; i < len && n + 1 < cap; i++)
			out[n++] = s[i];
	}
	out[n] = '\0';
	return n;
}

static void write_all(int fd, const char *s, size_t n)
{
	while (n) {
		long w = sys3(SYS_write, fd, s, n);

		if (w <= 0)
			return; /* nobody reads our output: not our problem */
		s += w;
		n -= (size_t)w;
	}
}

/* ---- state ------------------------------------------------------------------------- */

/* One split vring, seen from the device side (indices are u16 in shared memory). */
struct vring {
	uint32_t num;
	volatile struct vring_desc *desc;
	volatile uint16_t *avail; /* [0] flags, [1] idx, [2 + i] ring[i] */
	volatile uint16_t *used;  /* [0] flags, [1] idx, then the elements */
	volatile struct vring_used_elem *elem;
	uint16_t last_avail; /* how far we consumed avail.ring */
	uint16_t used_idx;   /* our copy of used.idx */
};

#define RING_FLAGS 0
#define RING_IDX 1
#define AVAIL_RING 2

static struct {
	uint8_t *mem; /* the shared memory: device address == offset */
	uint64_t size;
	char *trace; /* our trace buffer in shared memory, or NULL */
	uint32_t trace_len, trace_pos;
	int sock; /* the doorbell socket */
	volatile struct fw_rsc_vdev *vdev;
	uint32_t features;
	struct vring vq[2]; /* vq[0]: we send on it; vq[1]: we receive on it */
	uint32_t echoed, dropped;
	const char *stop; /* why the main loop ends, once it should */
} fw = {.sock = -1};

/* ---- output: the trace buffer, stdout and stderr ------------------------------------ */

/* Append one line to the trace buffer (NUL-terminated, no wrapping) and write it to fd
 * (-1: trace only). */
static __attribute__((format(printf, 2, 3))) void note(int fd, const char *fmt, ...)
{
	char line[256];
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	n = vformat(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	line[n++] = '\n';
	if (fw.trace && fw.trace_pos + n < fw.trace_len) {
		memcpy(fw.trace + fw.trace_pos, line, n);
		fw.trace_pos += (uint32_t)n;
		fw.trace[fw.trace_pos] = '\0';
	}
	if (fd >= 0)
		write_all(fd, line, n);
}

/* Stop: report to the trace and to stdout (code 0) or stderr, and exit with code. */
static __attribute__((noreturn, format(printf, 2, 3))) void finish(int code, const char *fmt, ...)
{
	char why[200];
	va_list ap;

	va_start(ap, fmt);
	vformat(why, sizeof(why), fmt, ap);
	va_end(ap);
	note(code ? 2 : 1, "echo_fw: echoed %u messages, exiting: %s", fw.echoed, why);
	sys_exit(code);
}

/* ---- the doorbell: one byte 0x01 per kick on a UNIX stream socket ------------------- */

static void kick(void)
{
	static const char one = 1;
	long rc = syscall6(SYS_sendto, fw.sock, (long)&one, 1, MSG_NOSIGNAL, 0, 0);

	if (rc == -EPIPE || rc == -ECONNRESET)
		finish(0, "the host disconnected");
	/* -EAGAIN: the socket is full of kicks the host has not read; they wake it anyway */
}

/* Consume every pending kick; return whether there was one.  EOF: the host went away. */
static int drain_kicks(void)
{
	char buf[64];
	int kicked = 0;

	for (;;) {
		long n = sys3(SYS_read, fw.sock, buf, sizeof(buf));

		if (n > 0) {
			kicked = 1;
			continue;
		}
		if (n == 0 || n == -ECONNRESET)
			finish(0, "the host disconnected");
		return kicked; /* -EAGAIN: nothing more pending */
	}
}

/* Block up to timeout_ms for a kick, then consume every pending one. */
static int wait_kick(int64_t timeout_ms)
{
	struct { int fd; short events, revents; } p = {fw.sock, POLLIN, 0};

	if (sys3(SYS_poll, &p, 1, timeout_ms) <= 0)
		return 0; /* timeout (or a signal) */
	return drain_kicks();
}

static void connect_host(const char *path)
{
	struct { uint16_t family; char path[108]; } addr = {AF_UNIX, {0}};
	int64_t deadline = now_ms() + 5000;

	memcpy(addr.path, path, str_len(path)); /* length checked by the caller */
	for (;;) {
		long fd = sys3(SYS_socket, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		long rc;

		if (fd < 0)
			finish(5, "socket() failed with errno %lu", (unsigned long)-fd);
		rc = sys3(SYS_connect, fd, &addr, sizeof(addr));
		if (rc == 0) {
			fw.sock = (int)fd;
			sys3(SYS_fcntl, fd, F_SETFL, sys3(SYS_fcntl, fd, F_GETFL, 0) | O_NONBLOCK);
			return;
		}
		sys3(SYS_close, fd, 0, 0);
		if (now_ms() >= deadline)
			finish(5, "could not connect to %s within 5 s (errno %lu)", path,
			       (unsigned long)-rc);
		sleep_ms(10);
	}
}

/* ---- the resource table in shared memory -------------------------------------------- */

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static void setup_vring(int i, const volatile struct fw_rsc_vdev_vring *r)
{
	struct vring *vr = &fw.vq[i];
	uint64_t da = r->da, num = r->num, align = r->align, avail, used, end;

	if (num == 0 || num > 32768 || (num & (num - 1)))
		finish(3, "bad resource table: vring %u has num %lu (not a power of two <= 32768)",
		       (unsigned)i, num);
	if (align < 16 || (align & (align - 1)) || da % 16)
		finish(3, "bad resource table: vring %u has da 0x%lx align 0x%lx", (unsigned)i, da,
		       align);
	avail = da + 16 * num;
	used = (avail + 4 + 2 * num + 2 + align - 1) & ~(align - 1);
	end = used + 4 + 8 * num + 2;
	if (end > fw.size)
		finish(3, "bad resource table: vring %u [0x%lx, 0x%lx) lies outside the memory",
		       (unsigned)i, da, end);
	vr->num = (uint32_t)num;
	vr->desc = (volatile struct vring_desc *)(fw.mem + da);
	vr->avail = (volatile uint16_t *)(fw.mem + avail);
	vr->used = (volatile uint16_t *)(fw.mem + used);
	vr->elem = (volatile struct vring_used_elem *)(fw.mem + used + 4);
}

/* Validate the table the host wrote at da and find our vdev (C rsc_table_parser.c). */
static void load_table(uint64_t da)
{
	const uint8_t *t = fw.mem + da;
	uint64_t room = fw.size - da; /* the table may run to the end of the memory */
	uint32_t ver = rd32(t), num = rd32(t + 4);

	if (ver != 1)
		finish(3, "bad resource table at 0x%lx: version %u (expected 1)", da, ver);
	if (rd32(t + 8) || rd32(t + 12))
		finish(3, "bad resource table at 0x%lx: reserved words are not zero", da);
	if (16 + 4 * (uint64_t)num > room)
		finish(3, "bad resource table at 0x%lx: %u offsets do not fit", da, num);
	for (uint32_t i = 0; i < num; i++) {
		uint64_t off = rd32(t + 16 + 4 * i), need;
		const volatile struct fw_rsc_vdev *vdev;

		if (off + 4 > room)
			finish(3, "bad resource table: entry %u at offset 0x%lx is outside", i, off);
		if (rd32(t + off) != RSC_VDEV)
			continue;
		if (off % 4 || off + sizeof(*vdev) > room)
			finish(3, "bad resource table: vdev entry at offset 0x%lx", off);
		vdev = (const volatile struct fw_rsc_vdev *)(t + off);
		need = sizeof(*vdev) + sizeof(struct fw_rsc_vdev_vring) * vdev->num_of_vrings +
		       vdev->config_len;
		if (vdev->id != VIRTIO_ID_RPMSG || vdev->num_of_vrings < 2 || off + need > room)
			finish(3, "bad resource table: vdev id %u with %u vrings (want rpmsg, 2)",
			       vdev->id, vdev->num_of_vrings);
		fw.vdev = (volatile struct fw_rsc_vdev *)(fw.mem + da + off);
		for (int k = 0; k < 2; k++)
			setup_vring(k, (const volatile struct fw_rsc_vdev_vring *)(t + off +
					sizeof(*vdev)) + k);
		return;
	}
	finish(3, "bad resource table at 0x%lx: no vdev entry among %u entries", da, num);
}

/* C rproc_virtio_wait_remote_ready(): poll the status byte; the driver kicks after
 * writing it. */
static void wait_driver_ok(void)
{
	int64_t deadline = now_ms() + 10000;

	for (;;) {
		int64_t left;

		drain_kicks();
		if (fw.vdev->status & VIRTIO_CONFIG_S_DRIVER_OK)
			break;
		left = deadline - now_ms();
		if (left <= 0)
			finish(5, "the host did not set DRIVER_OK within 10 s (status 0x%x)",
			       fw.vdev->status);
		wait_kick(left > 1000 ? 1000 : left);
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	fw.features = fw.vdev->dfeatures & fw.vdev->gfeatures;
	for (int i = 0; i < 2; i++) { /* the driver has just initialised the rings */
		fw.vq[i].last_avail = 0;
		fw.vq[i].used_idx = fw.vq[i].used[RING_IDX];
	}
	note(-1, "echo_fw: DRIVER_OK seen, features 0x%x", fw.features);
}

/* ---- virtqueue operations, device side (C virtqueue.c) ------------------------------ */

/* Take the next buffer the driver made available: 1 with head, buffer and length. */
static int get_avail(int q, uint16_t *head, uint8_t **buf, uint32_t *len)
{
	struct vring *vr = &fw.vq[q];
	uint16_t idx = vr->avail[RING_IDX], h;
	uint64_t addr;
	uint32_t l;

	if (idx == vr->last_avail)
		return 0;
	if ((uint16_t)(idx - vr->last_avail) > vr->num)
		finish(6, "vring %u: avail.idx jumped from %u to %u", (unsigned)q, vr->last_avail,
		       idx);
	__atomic_thread_fence(__ATOMIC_SEQ_CST); /* read the entry only after its index */
	h = vr->avail[AVAIL_RING + (vr->last_avail & (vr->num - 1))];
	if (h >= vr->num)
		finish(6, "vring %u: avail.ring names descriptor %u of %u", (unsigned)q, h, vr->num);
	addr = vr->desc[h].addr;
	l = vr->desc[h].len;
	if (addr > fw.size || l > fw.size - addr)
		finish(6, "vring %u: desc %u [0x%lx, +0x%x) lies outside the memory", (unsigned)q, h,
		       addr, l);
	vr->last_avail++;
	*head = h;
	*buf = fw.mem + addr;
	*len = l;
	return 1;
}

/* Give buffer head back with len bytes used (C always reports the whole buffer). */
static void add_used(int q, uint16_t head, uint32_t len)
{
	struct vring *vr = &fw.vq[q];
	volatile struct vring_used_elem *e = &vr->elem[vr->used_idx & (vr->num - 1)];

	e->id = head;
	e->len = len;
	__atomic_thread_fence(__ATOMIC_SEQ_CST); /* the element before the index */
	vr->used[RING_IDX] = ++vr->used_idx;
}

/* Kick the driver unless it asked not to be interrupted for this queue. */
static void notify_driver(int q)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!(fw.vq[q].avail[RING_FLAGS] & VRING_AVAIL_F_NO_INTERRUPT))
		kick();
}

/* ---- rpmsg (C rpmsg_virtio.c, device role) ------------------------------------------ */

/* Send len payload bytes from src to dst in a buffer of vring 0.  We keep
 * VRING_USED_F_NO_NOTIFY set on vring 0 (the driver does not kick when it re-posts
 * buffers); while no buffer is free we clear it, so the driver kicks when it posts one. */
static void send_msg(uint32_t src, uint32_t dst, const void *data, uint32_t len)
{
	struct vring *vr = &fw.vq[0];
	struct rpmsg_hdr hdr = {src, dst, 0, 0, 0};
	int64_t deadline = 0;
	uint16_t head;
	uint8_t *buf;
	uint32_t size;

	while (!get_avail(0, &head, &buf, &size)) {
		int64_t left;

		if (!deadline) { /* ask for a kick, then look once more before blocking */
			vr->used[RING_FLAGS] = 0;
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			deadline = now_ms() + 10000;
			continue;
		}
		left = deadline - now_ms();
		if (left <= 0)
			finish(4, "no free buffer on vring 0 for 10 s");
		wait_kick(left > 1000 ? 1000 : left);
	}
	if (deadline)
		vr->used[RING_FLAGS] = VRING_USED_F_NO_NOTIFY;
	if (size < sizeof(hdr))
		finish(6, "vring 0: desc %u is a %u-byte buffer, too small for a header", head, size);
	if (len > size - sizeof(hdr))
		len = size - sizeof(hdr); /* the C library clamps silently too */
	hdr.len = (uint16_t)len;
	memcpy(buf + sizeof(hdr), data, len);
	memcpy(buf, &hdr, sizeof(hdr));
	add_used(0, head, size);
	notify_driver(0);
}

static int is_our_service(const char name[32])
{
	static const char want[32] = ECHO_SERVICE; /* NUL-padded, like strncmp(.., 32) */

	for (int i = 0; i < 32 && (name[i] || want[i]); i++)
		if (name[i] != want[i])
			return 0;
	return 1;
}

/* The rpmsg-echo application plus the name-service endpoint. */
static void handle_message(uint16_t head, uint8_t *buf, uint32_t size)
{
	struct rpmsg_hdr hdr;
	uint32_t index = head;
	const uint8_t *payload = buf + sizeof(hdr);

	if (size < sizeof(hdr)) {
		fw.dropped++;
		return;
	}
	memcpy(&hdr, buf, sizeof(hdr));
	/* the receiver records its buffer index in the header, as the C library does */
	memcpy(buf + offsetof(struct rpmsg_hdr, reserved), &index, sizeof(index));
	if (hdr.len > size - sizeof(hdr)) {
		fw.dropped++;
	} else if (hdr.dst == ECHO_ADDR) {
		if (hdr.len >= 4 && rd32(payload) == SHUTDOWN_MSG) {
			fw.stop = "shutdown message";
			return;
		}
		send_msg(ECHO_ADDR, hdr.src, payload, hdr.len);
		fw.echoed++;
	} else if (hdr.dst == RPMSG_NS_ADDR && hdr.len == sizeof(struct rpmsg_ns_msg)) {
		struct rpmsg_ns_msg ns;

		memcpy(&ns, payload, sizeof(ns));
		if ((ns.flags & RPMSG_NS_DESTROY) && is_our_service(ns.name))
			fw.stop = "the host destroyed its endpoint";
		/* an NS create needs no action: we reply to hdr.src */
	} else {
		fw.dropped++; /* no such endpoint: dropped, as the C library does */
	}
}

/* C rpmsg_virtio_rx_callback(): every message the driver has made available. */
static void process_rx(void)
{
	uint16_t head;
	uint8_t *buf;
	uint32_t size;

	while (get_avail(1, &head, &buf, &size)) {
		handle_message(head, buf, size);
		add_used(1, head, size);
		notify_driver(1);
		if (fw.stop)
			finish(0, "%s", fw.stop);
	}
}

static void announce(void)
{
	struct rpmsg_ns_msg ns;

	memset(&ns, 0, sizeof(ns)); /* the name is NUL-padded with zeros */
	memcpy(ns.name, ECHO_SERVICE, sizeof(ECHO_SERVICE) - 1);
	ns.addr = ECHO_ADDR;
	ns.flags = 0; /* create */
	send_msg(ECHO_ADDR, RPMSG_NS_ADDR, &ns, sizeof(ns));
}

/* ---- start-up ----------------------------------------------------------------------- */

static const char *get_env(char **envp, const char *name)
{
	size_t n = str_len(name);

	for (; *envp; envp++) {
		size_t i = 0;

		while (i < n && (*envp)[i] == name[i])
			i++;
		if (i == n && (*envp)[n] == '=')
			return *envp + n + 1;
	}
	return NULL;
}

/* Decimal or 0x-hex, the whole string, no overflow. */
static int parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0, base = 10;

	if (!s)
		return 0;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	if (!*s)
		return 0;
	for (; *s; s++) {
		uint64_t d;
		char c = (char)(*s | 0x20);

		if (*s >= '0' && *s <= '9')
			d = (uint64_t)(*s - '0');
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = (uint64_t)(c - 'a' + 10);
		else
			return 0;
		if (v > (UINT64_MAX - d) / base)
			return 0;
		v = v * base + d;
	}
	*out = v;
	return 1;
}

static __attribute__((noreturn, format(printf, 1, 2))) void env_error(const char *fmt, ...)
{
	char msg[300];
	va_list ap;

	va_start(ap, fmt);
	vformat(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	note(2, "echo_fw: %s (the host sets OPENAMP_SHM, OPENAMP_SHM_SIZE, OPENAMP_EVENT and "
		"OPENAMP_RSC_DA; see tests/firmware/README.md)", msg);
	sys_exit(2);
}

static const char *or_unset(const char *s)
{
	return s ? s : "(unset)";
}

static void map_memory(const char *path, uint64_t size)
{
	long fd = sys3(SYS_open, path, O_RDWR | O_CLOEXEC, 0);
	long end, addr;

	if (fd < 0)
		env_error("cannot open OPENAMP_SHM=%s (errno %lu)", path, (unsigned long)-fd);
	end = sys3(SYS_lseek, fd, 0, SEEK_END);
	if (end < 0 || (uint64_t)end < size)
		env_error("OPENAMP_SHM=%s is smaller than OPENAMP_SHM_SIZE=0x%lx", path, size);
	addr = syscall6(SYS_mmap, 0, (long)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (addr < 0 && addr > -4096)
		env_error("cannot map OPENAMP_SHM=%s (errno %lu)", path, (unsigned long)-addr);
	sys3(SYS_close, fd, 0, 0);
	fw.mem = (uint8_t *)addr;
	fw.size = size;
}

void fw_main(long *sp) __attribute__((noreturn));

void fw_main(long *sp)
{
	char **envp = (char **)(sp + 1 + sp[0] + 1); /* argc, argv[], NULL, envp[] */
	const char *shm = get_env(envp, "OPENAMP_SHM");
	const char *size_s = get_env(envp, "OPENAMP_SHM_SIZE");
	const char *event = get_env(envp, "OPENAMP_EVENT");
	const char *da_s = get_env(envp, "OPENAMP_RSC_DA");
	struct { long handler, flags, restorer, mask; } ignore = {SIG_IGN, 0, 0, 0};
	uint64_t size, rsc_da;

	/* a host that closed our stdout or stderr must not kill us before we say goodbye */
	syscall6(SYS_rt_sigaction, SIGPIPE, (long)&ignore, 0, sizeof(ignore.mask), 0, 0);
	if (!shm || !*shm)
		env_error("OPENAMP_SHM (path of the shared-memory file) is not set");
	if (!parse_u64(size_s, &size) || size < 16 || size > (1ul << 40))
		env_error("OPENAMP_SHM_SIZE=%s is not a byte count (decimal or 0x-hex)",
			  or_unset(size_s));
	if (!event || !*event || str_len(event) >= 108)
		env_error("OPENAMP_EVENT=%s is not a UNIX socket path", or_unset(event));
	if (!parse_u64(da_s, &rsc_da) || rsc_da > size - 16)
		env_error("OPENAMP_RSC_DA=%s is not an address inside the %lu-byte memory",
			  or_unset(da_s), size);
	map_memory(shm, size);

	/* Our trace buffer is where our own table says; like a .bss array it starts empty. */
	if (resource_table.trace.da + (uint64_t)resource_table.trace.len <= size) {
		fw.trace = (char *)fw.mem + resource_table.trace.da;
		fw.trace_len = resource_table.trace.len;
		memset(fw.trace, 0, fw.trace_len);
	}
	note(-1, "echo_fw: booted, table at 0x%lx", rsc_da);

	load_table(rsc_da);
	connect_host(event);
	wait_driver_ok();
	fw.vq[0].used[RING_FLAGS] = VRING_USED_F_NO_NOTIFY; /* as the C library's remote */
	if (fw.features & (1u << VIRTIO_RPMSG_F_NS))
		announce();
	for (;;) {
		process_rx();
		wait_kick(1000); /* the timeout only bounds how late we notice a lost kick */
	}
}

/* The process entry point: hand the initial stack (argc, argv, envp) to fw_main. */
__asm__(".pushsection .text\n"
	".globl _start\n"
	"_start:\n"
	"	xor %ebp, %ebp\n"
	"	mov %rsp, %rdi\n"
	"	and $-16, %rsp\n"
	"	call fw_main\n"
	"	hlt\n"
	".popsection\n");
