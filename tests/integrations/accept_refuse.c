/*
 * LD_PRELOAD shim for the integrations tier: accept4 fails with ENOBUFS
 * (no kernel memory for the connection, which stays pending) while the
 * file named by WSMUX_REFUSE_ACCEPT exists, appending one byte to it per
 * refusal (the file's size counts the attempts), and is the system call
 * otherwise. Lets a test put a whole example server, whose accept4 calls
 * it cannot reach, in the state a loaded machine puts it in.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

int accept4(int fd, __SOCKADDR_ARG addr, socklen_t *__restrict len,
            int flags) {
  const char *flag = getenv("WSMUX_REFUSE_ACCEPT");
  int f = flag ? open(flag, O_WRONLY | O_APPEND | O_CLOEXEC) : -1;
  if (f >= 0) {
    ssize_t w = write(f, "x", 1);
    close(f);
    errno = w == 1 ? ENOBUFS : EIO;
    return -1;
  }
  return (int)syscall(SYS_accept4, fd, addr.__sockaddr__, len, flags);
}
