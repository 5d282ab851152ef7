"""cffi builder for emptcp's bindings to the system libbpf (API mode, out-of-line).

Compiled when the package is installed (``cffi_modules`` in setup.py), so every
opts struct is laid out by the C compiler from libbpf's own headers; we only
name the fields we touch and leave the rest to ``...``.
"""
from cffi import FFI

CDEF = r"""
typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;

struct bpf_object;
struct bpf_program;
struct bpf_map;
struct bpf_link;
struct ring_buffer;
struct perf_buffer;

/* ---- object ---- */
struct bpf_object_open_opts {
    size_t sz;
    const char *object_name;
    const char *pin_root_path;
    char *kernel_log_buf;
    size_t kernel_log_size;
    __u32 kernel_log_level;
    ...;
};
struct bpf_object *bpf_object__open_file(const char *path, const struct bpf_object_open_opts *opts);
int bpf_object__load(struct bpf_object *obj);
void bpf_object__close(struct bpf_object *obj);
const char *bpf_object__name(const struct bpf_object *obj);
struct bpf_program *bpf_object__find_program_by_name(const struct bpf_object *obj, const char *name);
struct bpf_map *bpf_object__find_map_by_name(const struct bpf_object *obj, const char *name);
struct bpf_program *bpf_object__next_program(const struct bpf_object *obj, struct bpf_program *prog);
struct bpf_map *bpf_object__next_map(const struct bpf_object *obj, const struct bpf_map *map);
int bpf_object__pin_maps(struct bpf_object *obj, const char *path);
int bpf_object__unpin_maps(struct bpf_object *obj, const char *path);

/* ---- program ---- */
const char *bpf_program__name(const struct bpf_program *prog);
const char *bpf_program__section_name(const struct bpf_program *prog);
int bpf_program__fd(const struct bpf_program *prog);
int bpf_program__type(const struct bpf_program *prog);
int bpf_program__set_type(struct bpf_program *prog, int type);
int bpf_program__expected_attach_type(const struct bpf_program *prog);
int bpf_program__set_expected_attach_type(struct bpf_program *prog, int type);
_Bool bpf_program__autoload(const struct bpf_program *prog);
int bpf_program__set_autoload(struct bpf_program *prog, _Bool autoload);
int bpf_program__set_log_buf(struct bpf_program *prog, char *log_buf, size_t log_size);
int bpf_program__set_log_level(struct bpf_program *prog, __u32 log_level);
size_t bpf_program__insn_cnt(const struct bpf_program *prog);
int bpf_program__pin(struct bpf_program *prog, const char *path);
int bpf_program__unpin(struct bpf_program *prog, const char *path);
struct bpf_link *bpf_program__attach_xdp(const struct bpf_program *prog, int ifindex);
int bpf_program__set_attach_target(struct bpf_program *prog, int attach_prog_fd, const char *attach_func_name);

/* ---- tracing attachments (libbpf creates the perf event / raw tp / link) ---- */
struct bpf_kprobe_opts { size_t sz; __u64 bpf_cookie; size_t offset; _Bool retprobe; ...; };
struct bpf_link *bpf_program__attach_kprobe_opts(const struct bpf_program *prog, const char *func_name, const struct bpf_kprobe_opts *opts);
struct bpf_link *bpf_program__attach_tracepoint(const struct bpf_program *prog, const char *tp_category, const char *tp_name);
struct bpf_link *bpf_program__attach_raw_tracepoint(const struct bpf_program *prog, const char *tp_name);
struct bpf_link *bpf_program__attach_trace(const struct bpf_program *prog);
struct bpf_link *bpf_program__attach(const struct bpf_program *prog);

/* ---- map (object level) ---- */
const char *bpf_map__name(const struct bpf_map *map);
int bpf_map__fd(const struct bpf_map *map);
int bpf_map__type(const struct bpf_map *map);
__u32 bpf_map__key_size(const struct bpf_map *map);
__u32 bpf_map__value_size(const struct bpf_map *map);
__u32 bpf_map__max_entries(const struct bpf_map *map);
int bpf_map__set_max_entries(struct bpf_map *map, __u32 max_entries);
__u32 bpf_map__map_flags(const struct bpf_map *map);
int bpf_map__reuse_fd(struct bpf_map *map, int fd);
int bpf_map__set_pin_path(struct bpf_map *map, const char *path);
const char *bpf_map__pin_path(const struct bpf_map *map);
_Bool bpf_map__is_pinned(const struct bpf_map *map);
_Bool bpf_map__is_internal(const struct bpf_map *map);
int bpf_map__pin(struct bpf_map *map, const char *path);
int bpf_map__unpin(struct bpf_map *map, const char *path);
int bpf_map__set_autocreate(struct bpf_map *map, _Bool autocreate);
__u32 bpf_map__btf_key_type_id(const struct bpf_map *map);
__u32 bpf_map__btf_value_type_id(const struct bpf_map *map);
int bpf_map__set_initial_value(struct bpf_map *map, const void *data, size_t size);
const void *bpf_map__initial_value(struct bpf_map *map, size_t *psize);

/* ---- BTF (the variables of a .rodata/.data section) ---- */
struct btf;
struct btf_type { __u32 name_off; __u32 info; ...; };
struct btf_var_secinfo { __u32 type; __u32 offset; __u32 size; };
struct btf *bpf_object__btf(const struct bpf_object *obj);
__s32 btf__find_by_name_kind(const struct btf *btf, const char *type_name, __u32 kind);
const struct btf_type *btf__type_by_id(const struct btf *btf, __u32 id);
const char *btf__name_by_offset(const struct btf *btf, __u32 offset);
__u16 btf_vlen(const struct btf_type *t);
struct btf_var_secinfo *btf_var_secinfos(const struct btf_type *t);

/* ---- fd-level syscalls ---- */
int bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags);
int bpf_map_lookup_elem(int fd, const void *key, void *value);
int bpf_map_lookup_elem_flags(int fd, const void *key, void *value, __u64 flags);
int bpf_map_lookup_and_delete_elem(int fd, const void *key, void *value);
int bpf_map_delete_elem(int fd, const void *key);
int bpf_map_get_next_key(int fd, const void *key, void *next_key);
int bpf_map_freeze(int fd);
struct bpf_map_create_opts { size_t sz; __u32 map_flags; ...; };
int bpf_map_create(int map_type, const char *map_name, __u32 key_size, __u32 value_size, __u32 max_entries, const struct bpf_map_create_opts *opts);
struct bpf_map_batch_opts { size_t sz; __u64 elem_flags; __u64 flags; ...; };
int bpf_map_delete_batch(int fd, const void *keys, __u32 *count, const struct bpf_map_batch_opts *opts);
int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, __u32 *count, const struct bpf_map_batch_opts *opts);
int bpf_map_update_batch(int fd, const void *keys, const void *values, __u32 *count, const struct bpf_map_batch_opts *opts);

int bpf_obj_pin(int fd, const char *pathname);
int bpf_obj_get(const char *pathname);
int bpf_obj_get_info_by_fd(int bpf_fd, void *info, __u32 *info_len);
int bpf_prog_get_fd_by_id(__u32 id);
int bpf_map_get_fd_by_id(__u32 id);
int bpf_link_get_fd_by_id(__u32 id);
int bpf_prog_get_next_id(__u32 start_id, __u32 *next_id);
int bpf_map_get_next_id(__u32 start_id, __u32 *next_id);
int bpf_link_get_next_id(__u32 start_id, __u32 *next_id);

struct bpf_test_run_opts {
    size_t sz;
    const void *data_in;
    void *data_out;
    __u32 data_size_in;
    __u32 data_size_out;
    const void *ctx_in;
    void *ctx_out;
    __u32 ctx_size_in;
    __u32 ctx_size_out;
    __u32 retval;
    int repeat;
    __u32 duration;
    __u32 flags;
    __u32 cpu;
    __u32 batch_size;
    ...;
};
int bpf_prog_test_run_opts(int prog_fd, struct bpf_test_run_opts *opts);

/* ---- links ---- */
struct bpf_link_create_opts { size_t sz; __u32 flags; ...; };
int bpf_link_create(int prog_fd, int target_fd, int attach_type, const struct bpf_link_create_opts *opts);
int bpf_link_detach(int link_fd);
int bpf_link_update(int link_fd, int new_prog_fd, const void *opts);
int bpf_link__fd(const struct bpf_link *link);
int bpf_link__pin(struct bpf_link *link, const char *path);
int bpf_link__destroy(struct bpf_link *link);
void bpf_link__disconnect(struct bpf_link *link);

/* ---- XDP (netlink) ---- */
struct bpf_xdp_attach_opts { size_t sz; int old_prog_fd; ...; };
int bpf_xdp_attach(int ifindex, int prog_fd, __u32 flags, const struct bpf_xdp_attach_opts *opts);
int bpf_xdp_detach(int ifindex, __u32 flags, const struct bpf_xdp_attach_opts *opts);
int bpf_xdp_query_id(int ifindex, int flags, __u32 *prog_id);

/* ---- TC clsact ---- */
struct bpf_tc_hook { size_t sz; int ifindex; int attach_point; __u32 parent; ...; };
struct bpf_tc_opts { size_t sz; int prog_fd; __u32 flags; __u32 prog_id; __u32 handle; __u32 priority; ...; };
int bpf_tc_hook_create(struct bpf_tc_hook *hook);
int bpf_tc_hook_destroy(struct bpf_tc_hook *hook);
int bpf_tc_attach(const struct bpf_tc_hook *hook, struct bpf_tc_opts *opts);
int bpf_tc_detach(const struct bpf_tc_hook *hook, const struct bpf_tc_opts *opts);
int bpf_tc_query(const struct bpf_tc_hook *hook, struct bpf_tc_opts *opts);

/* ---- ring buffer / perf buffer ---- */
typedef int (*ring_buffer_sample_fn)(void *ctx, void *data, size_t size);
struct ring_buffer *ring_buffer__new(int map_fd, ring_buffer_sample_fn sample_cb, void *ctx, const void *opts);
void ring_buffer__free(struct ring_buffer *rb);
int ring_buffer__poll(struct ring_buffer *rb, int timeout_ms);
int ring_buffer__consume(struct ring_buffer *rb);
int ring_buffer__epoll_fd(const struct ring_buffer *rb);

typedef void (*perf_buffer_sample_fn)(void *ctx, int cpu, void *data, __u32 size);
typedef void (*perf_buffer_lost_fn)(void *ctx, int cpu, __u64 cnt);
struct perf_buffer *perf_buffer__new(int map_fd, size_t page_cnt, perf_buffer_sample_fn sample_cb,
                                     perf_buffer_lost_fn lost_cb, void *ctx, const void *opts);
void perf_buffer__free(struct perf_buffer *pb);
int perf_buffer__poll(struct perf_buffer *pb, int timeout_ms);
int perf_buffer__consume(struct perf_buffer *pb);
int perf_buffer__epoll_fd(const struct perf_buffer *pb);

/* ---- misc ---- */
int libbpf_strerror(int err, char *buf, size_t size);
int libbpf_num_possible_cpus(void);
int libbpf_probe_bpf_prog_type(int prog_type, const void *opts);
int libbpf_probe_bpf_map_type(int map_type, const void *opts);
const char *libbpf_bpf_prog_type_str(int t);
const char *libbpf_bpf_map_type_str(int t);
const char *libbpf_bpf_attach_type_str(int t);
const char *libbpf_bpf_link_type_str(int t);
__u32 libbpf_major_version(void);
__u32 libbpf_minor_version(void);

/* our shims (see SOURCE) */
extern "Python+C" void emptcp_py_print(int level, const char *msg);
extern "Python" int emptcp_py_ringbuf(void *ctx, void *data, size_t size);
extern "Python" void emptcp_py_perf_sample(void *ctx, int cpu, void *data, __u32 size);
extern "Python" void emptcp_py_perf_lost(void *ctx, int cpu, __u64 cnt);
void emptcp_install_print(void);
void emptcp_set_print_level(int level);
int emptcp_bpf_syscall(int cmd, void *attr, unsigned int size);
"""

SOURCE = r"""
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>

void emptcp_py_print(int level, const char *msg);

static int emptcp_print_level = LIBBPF_INFO;

/* Messages above this level never reach Python: libbpf prints thousands of
 * debug lines per object load, and each crossing costs a microsecond or more. */
static void emptcp_set_print_level(int level)
{
    emptcp_print_level = level;
}

/* libbpf hands its log a va_list, which cffi cannot take: format here. A
 * verifier log arrives as one message that can be megabytes long. */
static int emptcp_print_shim(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    char small[4096], *buf = small;
    va_list again;
    int n;

    if ((int)level > emptcp_print_level)
        return 0;
    va_copy(again, ap);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    if (n >= (int)sizeof(small) && (buf = malloc((size_t)n + 1)) != NULL)
        vsnprintf(buf, (size_t)n + 1, fmt, again);
    else if (buf == NULL)
        buf = small;
    va_end(again);
    emptcp_py_print((int)level, buf);
    if (buf != small)
        free(buf);
    return 0;
}

static void emptcp_install_print(void)
{
    libbpf_set_print(emptcp_print_shim);
}

/* The bpf(2) syscall for commands or attributes this libbpf predates (the
 * system libbpf 1.1 has no TCX fields in bpf_link_create_opts and no link ids
 * in bpf_prog_query_opts).  Returns the result, or -errno. */
static int emptcp_bpf_syscall(int cmd, void *attr, unsigned int size)
{
    long rc = syscall(__NR_bpf, cmd, attr, size);

    return rc < 0 ? -errno : (int)rc;
}
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source("emptcp.bpf._libbpf", SOURCE, libraries=["bpf"])

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
