/*
 * powercut.so: an LD_PRELOAD shim that keeps, for every file a process writes under one
 * folder, the image a power cut would leave of it: a "durable image" that receives data only
 * once the process has made it durable (fsync/fdatasync returned).
 *
 * Why: kill -9 of a process loses nothing it wrote, since the kernel's page cache keeps it,
 * so a kill -9 test cannot tell a write acknowledged after its fsync from one acknowledged
 * before. After a kill -9 of a process running under this shim, the durable image is what
 * the disk would hold had the power gone at that instant.
 *
 *   LD_PRELOAD=powercut.so POWERCUT_DIR=/data POWERCUT_OUT=/image [POWERCUT_LOG=/log] prog
 *
 * POWERCUT_DIR  the folder watched: every regular file opened under it (any depth, paths
 *               resolved through symlinked folders) is tracked. Unset: the shim does nothing.
 * POWERCUT_OUT  where the images go, under the same relative names (/data/a.db ->
 *               /image/a.db). An existing folder outside POWERCUT_DIR.
 * POWERCUT_LOG  optional: one line per event (track, sync with what it applied, rename,
 *               unlink, error). Errors also go to stderr. Nothing is ever written to stdout.
 * POWERCUT_SKIP comma-separated name suffixes not tracked (default "-shm").
 * POWERCUT_SYNC_DELAY_US  a slow disk: every fsync/fdatasync/sync of a tracked file sleeps this
 *               long before the real call (the data is not durable until after it), which
 *               widens every window a power cut can fall into.
 * POWERCUT_VERIFY=1  after each sync that leaves nothing pending, compare the whole image
 *               with the file (costly; the self-tests use it). Without it only sizes are
 *               compared. A difference is logged as an error: something wrote the file by a
 *               path this shim does not see.
 *
 * The model (what a power cut loses):
 * - Every write to a tracked file (write, pwrite, pwrite64, writev, pwritev, pwritev64,
 *   pwritev2, pwritev64v2) and every truncation (ftruncate, ftruncate64, truncate,
 *   truncate64, O_TRUNC at open) is done for real and also recorded, in order, in the file's
 *   pending list (per inode: every descriptor of the file shares it).
 * - fsync/fdatasync on any descriptor of the file: AFTER the real call returns 0, the
 *   pending operations recorded BEFORE the call began are applied to the image, in order.
 *   Writes made while the call runs stay pending; a process killed during the call gets
 *   nothing from it. sync() and syncfs() do the same for every tracked file. A descriptor
 *   opened with O_SYNC/O_DSYNC, or a pwritev2 with RWF_SYNC/RWF_DSYNC, syncs the whole file
 *   after each of its writes (generous: Linux only promises the written range).
 * - close() makes nothing durable; the pending list outlives the descriptor.
 * - A file's content when this process first opens it is taken as durable (the image starts
 *   as a copy). State is per process: one process under the shim at a time per folder.
 * - Metadata is durable at once: a created file exists in the image (empty until synced),
 *   rename and unlink of a tracked file rename/remove its image immediately. Directory
 *   fsync is not modelled (it changes nothing here), so a test cannot catch a missing one.
 * - Not modelled: pending writes that a real power cut may keep anyway (any subset, in any
 *   order, torn sectors): the image keeps none of them, the harshest legal outcome but not
 *   every one. Writes by mmap (SQLite's -shm is mapped and skipped by default: SQLite
 *   rebuilds it after a crash; its database pages are mapped read-only), by sendfile,
 *   copy_file_range, io_uring or raw syscall(); descriptors made by fcntl(F_DUPFD)
 *   (dup/dup2/dup3 are followed); sync_file_range (no durability promise); hard links;
 *   renamed folders; RENAME_EXCHANGE (logged as an error). Such a write is caught only
 *   indirectly, by the size or content check after a sync.
 *
 * Threads: one mutex guards all state and is held across each tracked write (so the pending
 * order is the order the file saw) but never across fsync. Untracked descriptors pay one
 * table read. A descriptor closed behind the shim's back (libuv closes by raw syscall) is
 * caught by comparing device and inode before each use.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAXFD 65536

enum { OP_WRITE, OP_TRUNC };

struct op {
  struct op *next;
  uint64_t seq;
  int kind;
  off_t off; /* OP_WRITE: offset; OP_TRUNC: the new size */
  size_t len;
  unsigned char data[];
};

struct file {
  struct file *next;       /* every file ever tracked (never freed: an fsync may hold one) */
  dev_t dev;
  ino_t ino;
  int live;                /* 0 once replaced by a newer file of the same inode */
  int linked;              /* still has its name under POWERCUT_DIR */
  char rel[PATH_MAX];      /* name relative to POWERCUT_DIR */
  int shadow;              /* descriptor of the image (raw syscalls only) */
  struct op *head, *tail;  /* pending, oldest first */
  uint64_t next_seq;
  size_t pending_bytes;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int active;
static int verify;
static long delay_us;
static char dir[PATH_MAX], out[PATH_MAX];
static size_t dirlen;
static int logfd = -1;
static char skip[512] = "-shm";
static struct file *files;
static struct file *fdtab[MAXFD];
static unsigned char fdsync[MAXFD];

static int (*r_open)(const char *, int, ...), (*r_open64)(const char *, int, ...);
static int (*r_openat)(int, const char *, int, ...), (*r_openat64)(int, const char *, int, ...);
static int (*r_close)(int), (*r_dup)(int), (*r_dup2)(int, int), (*r_dup3)(int, int, int);
static ssize_t (*r_write)(int, const void *, size_t);
static ssize_t (*r_pwrite)(int, const void *, size_t, off_t), (*r_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*r_writev)(int, const struct iovec *, int);
static ssize_t (*r_pwritev)(int, const struct iovec *, int, off_t), (*r_pwritev64)(int, const struct iovec *, int, off_t);
static ssize_t (*r_pwritev2)(int, const struct iovec *, int, off_t, int), (*r_pwritev64v2)(int, const struct iovec *, int, off_t, int);
static int (*r_ftruncate)(int, off_t), (*r_ftruncate64)(int, off_t);
static int (*r_truncate)(const char *, off_t), (*r_truncate64)(const char *, off_t);
static int (*r_fsync)(int), (*r_fdatasync)(int), (*r_syncfs)(int);
static void (*r_sync)(void);
static int (*r_rename)(const char *, const char *), (*r_renameat)(int, const char *, int, const char *);
static int (*r_renameat2)(int, const char *, int, const char *, unsigned int);
static int (*r_unlink)(const char *), (*r_unlinkat)(int, const char *, int);

/* ---- raw I/O for the shim's own files (never through the wrappers) ---------------------- */

static int sys_open(const char *p, int flags, mode_t mode) { return (int)syscall(SYS_openat, AT_FDCWD, p, flags | O_CLOEXEC, mode); }
static void sys_close(int fd) { syscall(SYS_close, fd); }
static ssize_t sys_pwrite(int fd, const void *b, size_t n, off_t o) { return syscall(SYS_pwrite64, fd, b, n, o); }
static ssize_t sys_pread(int fd, void *b, size_t n, off_t o) { return syscall(SYS_pread64, fd, b, n, o); }

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  if (logfd < 0) return;
  char line[PATH_MAX * 2 + 256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n > (int)sizeof line - 2) n = sizeof line - 2;
  line[n++] = '\n';
  syscall(SYS_write, logfd, line, (size_t)n);
}

/* An error of the shim itself: the image can no longer be trusted. Logged and on stderr. */
static void fail(const char *what, const char *name, int err) {
  char line[PATH_MAX + 256];
  int n = snprintf(line, sizeof line, "powercut: error: %s %s: %s\n", what, name, strerror(err));
  if (n > 0) syscall(SYS_write, 2, line, (size_t)(n < (int)sizeof line ? n : (int)sizeof line - 1));
  say("error %s %s: %s", what, name, strerror(err));
}

static int write_all(int fd, const unsigned char *b, size_t n, off_t o) {
  while (n > 0) {
    ssize_t w = sys_pwrite(fd, b, n, o);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    b += w; n -= (size_t)w; o += w;
  }
  return 0;
}

/* ---- set-up ----------------------------------------------------------------------------- */

#define REAL(name) r_##name = dlsym(RTLD_NEXT, #name)

static void init(void) {
  REAL(open); REAL(open64); REAL(openat); REAL(openat64); REAL(close); REAL(dup); REAL(dup2); REAL(dup3);
  REAL(write); REAL(pwrite); REAL(pwrite64); REAL(writev); REAL(pwritev); REAL(pwritev64); REAL(pwritev2); REAL(pwritev64v2);
  REAL(ftruncate); REAL(ftruncate64); REAL(truncate); REAL(truncate64); REAL(fsync); REAL(fdatasync); REAL(syncfs); REAL(sync);
  REAL(rename); REAL(renameat); REAL(renameat2); REAL(unlink); REAL(unlinkat);
  const char *d = getenv("POWERCUT_DIR"), *o = getenv("POWERCUT_OUT"), *l = getenv("POWERCUT_LOG"), *s = getenv("POWERCUT_SKIP");
  if (!d || !*d) return;
  if (l && *l) logfd = sys_open(l, O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (s) snprintf(skip, sizeof skip, "%s", s);
  verify = getenv("POWERCUT_VERIFY") && strcmp(getenv("POWERCUT_VERIFY"), "1") == 0;
  delay_us = getenv("POWERCUT_SYNC_DELAY_US") ? atol(getenv("POWERCUT_SYNC_DELAY_US")) : 0;
  if (!realpath(d, dir)) { fail("POWERCUT_DIR", d, errno); return; }
  if (!o || !realpath(o, out)) { fail("POWERCUT_OUT", o ? o : "(unset)", o ? errno : EINVAL); return; }
  dirlen = strlen(dir);
  if (strncmp(out, dir, dirlen) == 0 && (out[dirlen] == '/' || out[dirlen] == 0)) { fail("POWERCUT_OUT inside POWERCUT_DIR", out, EINVAL); return; }
  active = 1;
  say("start pid %d dir %s out %s", (int)getpid(), dir, out);
}

static void ensure(void) { pthread_once(&once, init); }
__attribute__((constructor)) static void ctor(void) { ensure(); }

/* The name of path (relative to dirfd) under POWERCUT_DIR, or 0 when it is not tracked. The
 * folder is resolved (symlinks, "..") with realpath; the last component is taken as is. */
static int tracked_name(int dirfd, const char *path, char *rel) {
  char full[PATH_MAX * 2], folder[PATH_MAX], canon[PATH_MAX];
  if (!path || !*path) return 0;
  if (path[0] == '/') snprintf(full, sizeof full, "%s", path);
  else if (dirfd == AT_FDCWD) {
    if (!getcwd(folder, sizeof folder)) return 0;
    snprintf(full, sizeof full, "%s/%s", folder, path);
  } else {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
    ssize_t n = readlink(link, folder, sizeof folder - 1);
    if (n <= 0) return 0;
    folder[n] = 0;
    snprintf(full, sizeof full, "%s/%s", folder, path);
  }
  char *slash = strrchr(full, '/');
  const char *base = slash + 1;
  if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) return 0;
  *slash = 0;
  if (!realpath(*full ? full : "/", canon)) return 0;
  if (strncmp(canon, dir, dirlen) != 0 || (canon[dirlen] != '/' && canon[dirlen] != 0)) return 0;
  size_t bl = strlen(base);
  for (const char *p = skip; *p;) {
    const char *e = strchr(p, ',');
    size_t sl = e ? (size_t)(e - p) : strlen(p);
    if (sl > 0 && sl <= bl && memcmp(base + bl - sl, p, sl) == 0) return 0;
    p += sl + (e ? 1 : 0);
  }
  int n = snprintf(rel, PATH_MAX, "%s%s%s", canon[dirlen] ? canon + dirlen + 1 : "", canon[dirlen] ? "/" : "", base);
  return n > 0 && n < PATH_MAX;
}

static void shadow_path(const char *rel, char *p) { snprintf(p, PATH_MAX * 2, "%s/%s", out, rel); }

/* ---- per-file state (callers hold mu) --------------------------------------------------- */

static struct file *find(dev_t dev, ino_t ino) {
  for (struct file *f = files; f; f = f->next)
    if (f->live && f->dev == dev && f->ino == ino) return f;
  return NULL;
}

static void drop_pending(struct file *f) {
  for (struct op *o = f->head, *n; o; o = n) { n = o->next; free(o); }
  f->head = f->tail = NULL;
  f->pending_bytes = 0;
}

/* The file that had this name before (another inode) lost it: its image is gone too. */
static void unname(const char *rel, struct file *except) {
  for (struct file *f = files; f; f = f->next)
    if (f != except && f->live && f->linked && strcmp(f->rel, rel) == 0) f->linked = 0;
}

/* Start tracking an inode under rel. Its image is a copy of src (a descriptor to read from,
 * or -1 for an empty file: one this process creates). */
static struct file *track(dev_t dev, ino_t ino, const char *rel, int src) {
  struct file *old = find(dev, ino);
  if (old) { old->live = 0; drop_pending(old); } /* an inode number used again */
  struct file *f = calloc(1, sizeof *f);
  if (!f) { fail("out of memory tracking", rel, ENOMEM); return NULL; }
  f->dev = dev; f->ino = ino; f->live = 1; f->linked = 1;
  snprintf(f->rel, sizeof f->rel, "%s", rel);
  unname(rel, f);
  char p[PATH_MAX * 2];
  shadow_path(rel, p);
  for (char *s = p + strlen(out) + 1; (s = strchr(s, '/')); s++) { *s = 0; syscall(SYS_mkdirat, AT_FDCWD, p, 0755); *s = '/'; }
  syscall(SYS_unlinkat, AT_FDCWD, p, 0); /* a fresh inode: an old image may still be open */
  f->shadow = sys_open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (f->shadow < 0) fail("cannot create the image", p, errno);
  size_t copied = 0;
  if (src >= 0 && f->shadow >= 0) {
    static unsigned char buf[1 << 16];
    for (off_t at = 0;;) {
      ssize_t n = sys_pread(src, buf, sizeof buf, at);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) { fail("cannot read to copy", rel, errno); break; }
      if (n == 0) break;
      if (write_all(f->shadow, buf, (size_t)n, at) < 0) { fail("cannot write the image", rel, errno); break; }
      at += n; copied += (size_t)n;
    }
  }
  f->next = files;
  files = f;
  say("track %s ino %lu %s %zu bytes", rel, (unsigned long)ino, src >= 0 ? "existing" : "created", copied);
  return f;
}

static void record(struct file *f, int kind, off_t off, const struct iovec *iov, int cnt, size_t len) {
  struct op *o = malloc(sizeof *o + (kind == OP_WRITE ? len : 0));
  if (!o) { fail("out of memory recording a write to", f->rel, ENOMEM); return; }
  o->next = NULL; o->seq = f->next_seq++; o->kind = kind; o->off = off; o->len = len;
  if (kind == OP_WRITE) {
    size_t at = 0;
    for (int i = 0; i < cnt && at < len; i++) {
      size_t n = iov[i].iov_len < len - at ? iov[i].iov_len : len - at;
      memcpy(o->data + at, iov[i].iov_base, n);
      at += n;
    }
    f->pending_bytes += len;
  }
  if (f->tail) f->tail->next = o; else f->head = o;
  f->tail = o;
}

static void check_image(struct file *f, int fd) {
  struct stat a, b;
  if (f->shadow < 0 || fstat(fd, &a) != 0 || fstat(f->shadow, &b) != 0) return;
  if (a.st_size != b.st_size) {
    say("error diverged %s: file %lld bytes, image %lld", f->rel, (long long)a.st_size, (long long)b.st_size);
    fail("image size differs from the file (a write the shim did not see):", f->rel, EIO);
    return;
  }
  if (!verify) return;
  static unsigned char x[1 << 16], y[1 << 16];
  char self[64];
  snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
  int rfd = sys_open(self, O_RDONLY, 0); /* fd may be write-only */
  for (off_t at = 0; rfd >= 0 && at < a.st_size;) {
    ssize_t n = sys_pread(rfd, x, sizeof x, at), m = sys_pread(f->shadow, y, sizeof y, at);
    if (n <= 0 || n != m || memcmp(x, y, (size_t)n) != 0) {
      say("error diverged %s: content differs near offset %lld", f->rel, (long long)at);
      fail("image content differs from the file:", f->rel, EIO);
      break;
    }
    at += n;
  }
  if (rfd >= 0) sys_close(rfd);
}

/* A sync returned: what was pending before it began (seq < upto) is durable now. */
static void apply(struct file *f, uint64_t upto, int fd, const char *why) {
  size_t ops = 0, bytes = 0;
  while (f->head && f->head->seq < upto) {
    struct op *o = f->head;
    if (f->shadow >= 0) {
      int bad = o->kind == OP_WRITE ? write_all(f->shadow, o->data, o->len, o->off)
                                    : (int)syscall(SYS_ftruncate, f->shadow, o->off);
      if (bad < 0) fail("cannot update the image", f->rel, errno);
    }
    if (o->kind == OP_WRITE) { bytes += o->len; f->pending_bytes -= o->len; }
    ops++;
    f->head = o->next;
    if (!f->head) f->tail = NULL;
    free(o);
  }
  say("sync %s %s ops %zu bytes %zu left %zu", f->rel, why, ops, bytes, f->pending_bytes);
  if (!f->head && fd >= 0) check_image(f, fd);
}

/* The file behind a descriptor, if tracked and still the same inode. */
static struct file *file_of(int fd) {
  if (fd < 0 || fd >= MAXFD) return NULL;
  struct file *f = fdtab[fd];
  if (!f) return NULL;
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_dev != f->dev || st.st_ino != f->ino || !f->live) {
    fdtab[fd] = NULL; /* closed behind our back (raw syscall) and the number reused */
    return NULL;
  }
  return f;
}

static int lookup(int fd) { return active && fd >= 0 && fd < MAXFD && __atomic_load_n(&fdtab[fd], __ATOMIC_RELAXED); }

/* ---- open ------------------------------------------------------------------------------- */

enum { V_OPEN, V_OPEN64, V_OPENAT, V_OPENAT64 };

static int real_open(int v, int dirfd, const char *path, int flags, mode_t mode) {
  switch (v) {
    case V_OPEN: return r_open(path, flags, mode);
    case V_OPEN64: return r_open64(path, flags, mode);
    case V_OPENAT: return r_openat(dirfd, path, flags, mode);
    default: return r_openat64(dirfd, path, flags, mode);
  }
}

static int do_open(int dirfd, const char *path, int flags, mode_t mode, int v) {
  ensure();
  char rel[PATH_MAX];
#define CALL() real_open(v, dirfd, path, flags, mode)
  if (!active || (flags & O_TMPFILE) == O_TMPFILE) {
    int fd = CALL();
    if (active && fd >= 0 && fd < MAXFD) fdtab[fd] = NULL;
    return fd;
  }
  if (!tracked_name(dirfd, path, rel)) {
    int fd = CALL();
    if (fd >= 0 && fd < MAXFD) { pthread_mutex_lock(&mu); fdtab[fd] = NULL; pthread_mutex_unlock(&mu); }
    return fd;
  }
  pthread_mutex_lock(&mu);
  struct stat before;
  int existed = fstatat(dirfd, path, &before, 0) == 0 && S_ISREG(before.st_mode);
  struct file *f = existed ? find(before.st_dev, before.st_ino) : NULL;
  if (existed && !f) {
    /* First sight of an existing file: its content now is the durable starting point
     * (copied before O_TRUNC can empty it). */
    int src = (int)syscall(SYS_openat, dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (src >= 0) { f = track(before.st_dev, before.st_ino, rel, src); sys_close(src); }
    else fail("cannot read to copy", rel, errno);
  }
  int fd = CALL();
  int e = errno;
  if (fd < 0) { pthread_mutex_unlock(&mu); errno = e; return fd; }
  struct stat st;
  if (fd >= MAXFD) fail("descriptor number too high to track", rel, EMFILE);
  else if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) fdtab[fd] = NULL;
  else {
    if (!f || f->dev != st.st_dev || f->ino != st.st_ino) {
      f = find(st.st_dev, st.st_ino);
      if (!f || !existed) f = track(st.st_dev, st.st_ino, rel, existed ? fd : -1);
    }
    if (f && existed && (flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY) record(f, OP_TRUNC, 0, NULL, 0, 0);
    fdtab[fd] = f;
    fdsync[fd] = (flags & (O_SYNC | O_DSYNC)) != 0;
  }
  pthread_mutex_unlock(&mu);
  errno = e;
  return fd;
#undef CALL
}

#define MODE_ARG(flags) mode_t mode = 0; \
  if ((flags) & O_CREAT || ((flags) & O_TMPFILE) == O_TMPFILE) { va_list ap; va_start(ap, flags); mode = va_arg(ap, mode_t); va_end(ap); }

int open(const char *p, int flags, ...) { MODE_ARG(flags); ensure(); return do_open(AT_FDCWD, p, flags, mode, V_OPEN); }
int open64(const char *p, int flags, ...) { MODE_ARG(flags); ensure(); return do_open(AT_FDCWD, p, flags, mode, V_OPEN64); }
int openat(int d, const char *p, int flags, ...) { MODE_ARG(flags); ensure(); return do_open(d, p, flags, mode, V_OPENAT); }
int openat64(int d, const char *p, int flags, ...) { MODE_ARG(flags); ensure(); return do_open(d, p, flags, mode, V_OPENAT64); }
int creat(const char *p, mode_t m) { ensure(); return do_open(AT_FDCWD, p, O_CREAT | O_WRONLY | O_TRUNC, m, V_OPEN); }
int creat64(const char *p, mode_t m) { ensure(); return do_open(AT_FDCWD, p, O_CREAT | O_WRONLY | O_TRUNC, m, V_OPEN64); }
/* _FORTIFY_SOURCE callers reach these (no mode: O_CREAT is refused there). */
int __open_2(const char *p, int flags) { ensure(); return do_open(AT_FDCWD, p, flags, 0, V_OPEN); }
int __open64_2(const char *p, int flags) { ensure(); return do_open(AT_FDCWD, p, flags, 0, V_OPEN64); }
int __openat_2(int d, const char *p, int flags) { ensure(); return do_open(d, p, flags, 0, V_OPENAT); }
int __openat64_2(int d, const char *p, int flags) { ensure(); return do_open(d, p, flags, 0, V_OPENAT64); }

int close(int fd) {
  ensure();
  if (lookup(fd)) { pthread_mutex_lock(&mu); fdtab[fd] = NULL; pthread_mutex_unlock(&mu); }
  return r_close(fd);
}

static int after_dup(int from, int to) {
  if (to >= 0 && to < MAXFD && active) {
    pthread_mutex_lock(&mu);
    struct file *f = file_of(from);
    fdtab[to] = f;
    if (f) fdsync[to] = fdsync[from];
    pthread_mutex_unlock(&mu);
  }
  return to;
}
int dup(int fd) { ensure(); return after_dup(fd, r_dup(fd)); }
int dup2(int fd, int to) { ensure(); int r = r_dup2(fd, to); return r < 0 ? r : after_dup(fd, r); }
int dup3(int fd, int to, int flags) { ensure(); int r = r_dup3(fd, to, flags); return r < 0 ? r : after_dup(fd, r); }

/* ---- writes ----------------------------------------------------------------------------- */

/* One tracked write: done for real under the lock, then recorded. off < 0: at the
 * descriptor's position (read back after the write, which also covers O_APPEND). */
static ssize_t do_write(int fd, const struct iovec *iov, int cnt, off_t off, int flags,
                        ssize_t (*real)(int, const struct iovec *, int, off_t, int)) {
  pthread_mutex_lock(&mu);
  struct file *f = file_of(fd);
  ssize_t r = real(fd, iov, cnt, off, flags);
  int e = errno;
  if (f && r > 0) {
    off_t at = off >= 0 ? off : lseek(fd, 0, SEEK_CUR) - r;
    record(f, OP_WRITE, at, iov, cnt, (size_t)r);
    if (fdsync[fd] || (flags & (RWF_SYNC | RWF_DSYNC))) apply(f, f->next_seq, fd, "o_sync");
  }
  pthread_mutex_unlock(&mu);
  errno = e;
  return r;
}

static ssize_t via_write(int fd, const struct iovec *v, int c, off_t o, int fl) { (void)c; (void)o; (void)fl; return r_write(fd, v[0].iov_base, v[0].iov_len); }
static ssize_t via_pwrite(int fd, const struct iovec *v, int c, off_t o, int fl) { (void)c; (void)fl; return r_pwrite(fd, v[0].iov_base, v[0].iov_len, o); }
static ssize_t via_pwrite64(int fd, const struct iovec *v, int c, off_t o, int fl) { (void)c; (void)fl; return r_pwrite64(fd, v[0].iov_base, v[0].iov_len, o); }
static ssize_t via_writev(int fd, const struct iovec *v, int c, off_t o, int fl) { (void)o; (void)fl; return r_writev(fd, v, c); }
static ssize_t via_pwritev(int fd, const struct iovec *v, int c, off_t o, int fl) { (void)fl; return r_pwritev(fd, v, c, o); }
static ssize_t via_pwritev64(int fd, const struct iovec *v, int c, off_t o, int fl) { (void)fl; return r_pwritev64(fd, v, c, o); }
static ssize_t via_pwritev2(int fd, const struct iovec *v, int c, off_t o, int fl) { return r_pwritev2(fd, v, c, o, fl); }
static ssize_t via_pwritev64v2(int fd, const struct iovec *v, int c, off_t o, int fl) { return r_pwritev64v2(fd, v, c, o, fl); }

ssize_t write(int fd, const void *b, size_t n) {
  ensure();
  if (!lookup(fd)) return r_write(fd, b, n);
  struct iovec v = {(void *)b, n};
  return do_write(fd, &v, 1, -1, 0, via_write);
}
ssize_t pwrite(int fd, const void *b, size_t n, off_t o) {
  ensure();
  if (!lookup(fd)) return r_pwrite(fd, b, n, o);
  struct iovec v = {(void *)b, n};
  return do_write(fd, &v, 1, o, 0, via_pwrite);
}
ssize_t pwrite64(int fd, const void *b, size_t n, off_t o) {
  ensure();
  if (!lookup(fd)) return r_pwrite64(fd, b, n, o);
  struct iovec v = {(void *)b, n};
  return do_write(fd, &v, 1, o, 0, via_pwrite64);
}
ssize_t writev(int fd, const struct iovec *v, int c) {
  ensure();
  return lookup(fd) ? do_write(fd, v, c, -1, 0, via_writev) : r_writev(fd, v, c);
}
ssize_t pwritev(int fd, const struct iovec *v, int c, off_t o) {
  ensure();
  return lookup(fd) ? do_write(fd, v, c, o, 0, via_pwritev) : r_pwritev(fd, v, c, o);
}
ssize_t pwritev64(int fd, const struct iovec *v, int c, off_t o) {
  ensure();
  return lookup(fd) ? do_write(fd, v, c, o, 0, via_pwritev64) : r_pwritev64(fd, v, c, o);
}
ssize_t pwritev2(int fd, const struct iovec *v, int c, off_t o, int fl) {
  ensure();
  return lookup(fd) ? do_write(fd, v, c, o, fl, via_pwritev2) : r_pwritev2(fd, v, c, o, fl);
}
ssize_t pwritev64v2(int fd, const struct iovec *v, int c, off_t o, int fl) {
  ensure();
  return lookup(fd) ? do_write(fd, v, c, o, fl, via_pwritev64v2) : r_pwritev64v2(fd, v, c, o, fl);
}

static int do_ftruncate(int fd, off_t len, int (*real)(int, off_t)) {
  ensure();
  if (!lookup(fd)) return real(fd, len);
  pthread_mutex_lock(&mu);
  struct file *f = file_of(fd);
  int r = real(fd, len), e = errno;
  if (f && r == 0) record(f, OP_TRUNC, len, NULL, 0, 0);
  pthread_mutex_unlock(&mu);
  errno = e;
  return r;
}
int ftruncate(int fd, off_t len) { return do_ftruncate(fd, len, r_ftruncate); }
int ftruncate64(int fd, off_t len) { return do_ftruncate(fd, len, r_ftruncate64); }

static int do_truncate(const char *path, off_t len, int (*real)(const char *, off_t)) {
  ensure();
  char rel[PATH_MAX];
  if (!active || !tracked_name(AT_FDCWD, path, rel)) return real(path, len);
  pthread_mutex_lock(&mu);
  struct stat st;
  struct file *f = NULL;
  if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && !(f = find(st.st_dev, st.st_ino))) {
    int src = sys_open(path, O_RDONLY, 0);
    if (src >= 0) { f = track(st.st_dev, st.st_ino, rel, src); sys_close(src); }
  }
  int r = real(path, len), e = errno;
  if (f && r == 0) record(f, OP_TRUNC, len, NULL, 0, 0);
  pthread_mutex_unlock(&mu);
  errno = e;
  return r;
}
int truncate(const char *p, off_t len) { return do_truncate(p, len, r_truncate); }
int truncate64(const char *p, off_t len) { return do_truncate(p, len, r_truncate64); }

/* ---- syncs ------------------------------------------------------------------------------ */

static void slow_disk(void) {
  if (delay_us <= 0) return;
  struct timespec t = {delay_us / 1000000, (delay_us % 1000000) * 1000};
  while (nanosleep(&t, &t) != 0 && errno == EINTR) {}
}

static int do_fsync(int fd, int (*real)(int), const char *why) {
  ensure();
  if (!lookup(fd)) return real(fd);
  pthread_mutex_lock(&mu);
  struct file *f = file_of(fd);
  uint64_t upto = f ? f->next_seq : 0; /* what was written before the call began */
  pthread_mutex_unlock(&mu);
  if (f) slow_disk();
  int r = real(fd), e = errno;
  if (f && r == 0) {
    pthread_mutex_lock(&mu);
    if (f->live) apply(f, upto, file_of(fd) == f ? fd : -1, why);
    pthread_mutex_unlock(&mu);
  }
  errno = e;
  return r;
}
int fsync(int fd) { return do_fsync(fd, r_fsync, "fsync"); }
int fdatasync(int fd) { return do_fsync(fd, r_fdatasync, "fdatasync"); }

/* sync()/syncfs(): every tracked file, as of the call's start. */
static int sync_all(int (*real)(int), int fd) {
  struct mark { struct file *f; uint64_t upto; } *marks = NULL;
  size_t n = 0;
  pthread_mutex_lock(&mu);
  for (struct file *f = files; f; f = f->next) n++;
  marks = calloc(n ? n : 1, sizeof *marks);
  n = 0;
  if (marks)
    for (struct file *f = files; f; f = f->next)
      if (f->live && f->head) { marks[n].f = f; marks[n].upto = f->next_seq; n++; }
  pthread_mutex_unlock(&mu);
  int r = 0, e = errno;
  slow_disk();
  if (real) { r = real(fd); e = errno; } else r_sync();
  pthread_mutex_lock(&mu);
  for (size_t i = 0; r == 0 && i < n; i++)
    if (marks[i].f->live) apply(marks[i].f, marks[i].upto, -1, real ? "syncfs" : "sync");
  pthread_mutex_unlock(&mu);
  free(marks);
  errno = e;
  return r;
}
void sync(void) { ensure(); if (active) sync_all(NULL, -1); else r_sync(); }
int syncfs(int fd) { ensure(); return active ? sync_all(r_syncfs, fd) : r_syncfs(fd); }

/* ---- names ------------------------------------------------------------------------------ */

static int do_rename(int od, const char *op, int nd, const char *np, unsigned int flags, int how) {
  ensure();
  char orel[PATH_MAX], nrel[PATH_MAX];
  int ot = active && tracked_name(od, op, orel), nt = active && tracked_name(nd, np, nrel);
#define CALL() (how == 0 ? r_rename(op, np) : how == 1 ? r_renameat(od, op, nd, np) : r_renameat2(od, op, nd, np, flags))
  if (!ot && !nt) return CALL();
  pthread_mutex_lock(&mu);
  struct stat st;
  int isreg = fstatat(od, op, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
  struct file *f = isreg ? find(st.st_dev, st.st_ino) : NULL;
  if (isreg && ot && !f) { /* never opened here: its content is its durable state */
    int src = (int)syscall(SYS_openat, od, op, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (src >= 0) { f = track(st.st_dev, st.st_ino, orel, src); sys_close(src); }
  }
  int r = CALL(), e = errno;
  if (r == 0 && isreg) {
#ifdef RENAME_EXCHANGE
    if (flags & RENAME_EXCHANGE) fail("rename with RENAME_EXCHANGE is not modelled:", ot ? orel : nrel, ENOTSUP);
#endif
    char a[PATH_MAX * 2], b[PATH_MAX * 2];
    if (ot && nt && f) {
      unname(nrel, f);
      shadow_path(orel, a); shadow_path(nrel, b);
      if (syscall(SYS_renameat, AT_FDCWD, a, AT_FDCWD, b) != 0) fail("cannot rename the image", a, errno);
      snprintf(f->rel, sizeof f->rel, "%s", nrel);
      say("rename %s %s", orel, nrel);
    } else if (ot && f) { /* moved out of the folder: gone from the image */
      shadow_path(orel, a);
      syscall(SYS_unlinkat, AT_FDCWD, a, 0);
      f->linked = 0;
      say("rename-out %s", orel);
    } else if (nt) { /* moved in: its content now is what the image starts from */
      int src = (int)syscall(SYS_openat, nd, np, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
      if (src >= 0) { track(st.st_dev, st.st_ino, nrel, src); sys_close(src); }
      say("rename-in %s", nrel);
    }
  }
  pthread_mutex_unlock(&mu);
  errno = e;
  return r;
#undef CALL
}
int rename(const char *o, const char *n) { return do_rename(AT_FDCWD, o, AT_FDCWD, n, 0, 0); }
int renameat(int od, const char *o, int nd, const char *n) { return do_rename(od, o, nd, n, 0, 1); }
int renameat2(int od, const char *o, int nd, const char *n, unsigned int fl) { return do_rename(od, o, nd, n, fl, 2); }

static int do_unlink(int d, const char *p, int flags, int at) {
  ensure();
  char rel[PATH_MAX];
  if (!active || (flags & AT_REMOVEDIR) || !tracked_name(d, p, rel)) return at ? r_unlinkat(d, p, flags) : r_unlink(p);
  pthread_mutex_lock(&mu);
  int r = at ? r_unlinkat(d, p, flags) : r_unlink(p), e = errno;
  if (r == 0) {
    char a[PATH_MAX * 2];
    shadow_path(rel, a);
    syscall(SYS_unlinkat, AT_FDCWD, a, 0);
    unname(rel, NULL);
    say("unlink %s", rel);
  }
  pthread_mutex_unlock(&mu);
  errno = e;
  return r;
}
int unlink(const char *p) { return do_unlink(AT_FDCWD, p, 0, 0); }
int unlinkat(int d, const char *p, int flags) { return do_unlink(d, p, flags, 1); }
