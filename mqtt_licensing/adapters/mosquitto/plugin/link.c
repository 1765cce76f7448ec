/*
 * The Unix socket between the plugin and its agent: who may connect and when it is read.
 * frames.c carries the frames over it.
 *
 * The socket is created 0600 (owned by the agent's user when the broker starts as root); a peer
 * must run as the agent's user (SO_PEERCRED) and open with the agent's hello; anything else, or
 * any malformed frame, closes the connection and changes nothing. One agent at a time.
 *
 * wake.c tells when there is something to read; the read itself happens on Mosquitto's thread,
 * in TICK, never blocking.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>

#include "licensing.h"

static int listen_fd = -1;
static _Atomic int agent_fd = -1;
static long allowed_uid = -1;
static bool agent_up;
static char *socket_path;

static _Atomic unsigned long ticks;
static _Atomic bool pending = true; /* woken (wake.c): something to read (or to accept) */
static struct timespec last_poll;

void lic_link_drop(const char *why)
{
	int fd = atomic_exchange(&agent_fd, -1);
	if(fd >= 0){
		close(fd);
		mosquitto_log_printf(MOSQ_LOG_WARNING, "mqtt-licensing: agent connection closed: %s", why);
	}
	agent_up = false;
	lic_frames_reset();
}

int lic_link_open(const char *path, long agent_uid)
{
	struct sockaddr_un addr;
	struct stat st;
	mode_t old_mask;
	int fd;

	if(strlen(path) >= sizeof(addr.sun_path)) return -1;
	/* Only ever replace a socket (a previous run's), never a file someone else put there. */
	if(lstat(path, &st) == 0){
		if(!S_ISSOCK(st.st_mode)) return -1;
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if(fd < 0) return -1;
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	strcpy(addr.sun_path, path);
	old_mask = umask(0177); /* created 0600: no window in which another user may connect */
	if(bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0){
		umask(old_mask);
		close(fd);
		return -1;
	}
	umask(old_mask);
	if(agent_uid >= 0 && geteuid() == 0 && chown(path, (uid_t)agent_uid, (gid_t)-1) != 0){
		close(fd);
		return -1;
	}
	if(listen(fd, 4) != 0){
		close(fd);
		return -1;
	}
	listen_fd = fd;
	allowed_uid = agent_uid >= 0 ? agent_uid : (long)geteuid();
	socket_path = strdup(path);
	return 0;
}

void lic_link_close(void)
{
	lic_wake_stop();
	lic_link_drop("broker stopping");
	if(listen_fd >= 0){
		close(listen_fd);
		listen_fd = -1;
	}
	if(socket_path){
		unlink(socket_path);
		free(socket_path);
		socket_path = NULL;
	}
	lic_frames_free();
}

bool lic_link_up(void)
{
	return agent_up;
}

void lic_link_set_up(bool up)
{
	agent_up = up;
}

int lic_link_listen_fd(void)
{
	return listen_fd;
}

int lic_link_agent_fd(void)
{
	return atomic_load(&agent_fd);
}

unsigned long lic_link_ticks(void)
{
	return atomic_load(&ticks);
}

void lic_link_pending(void)
{
	atomic_store(&pending, true);
}

/* True when an agent connection was taken. */
bool lic_link_accept(void)
{
	bool taken = false;
	if(listen_fd < 0) return false;
	for(;;){
		struct ucred cred;
		socklen_t len = sizeof(cred);
		int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if(fd < 0) return taken;
		if(getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || (long)cred.uid != allowed_uid){
			mosquitto_log_printf(MOSQ_LOG_WARNING,
					"mqtt-licensing: refused a connection on the agent socket from uid %ld (only uid %ld may connect)",
					(long)cred.uid, allowed_uid);
			close(fd);
			continue;
		}
		if(atomic_load(&agent_fd) >= 0){
			mosquitto_log_printf(MOSQ_LOG_WARNING, "mqtt-licensing: refused a second agent connection (one is connected)");
			close(fd);
			continue;
		}
		atomic_store(&agent_fd, fd);
		agent_up = false;
		taken = true;
		mosquitto_log_printf(MOSQ_LOG_INFO, "mqtt-licensing: agent connected");
	}
}

/* Mosquitto calls TICK on every turn of its loop: at a high message rate, two syscalls there would
 * cost more than the plugin's every other check. With a wake (wake.c), the socket is read when it
 * said so (and every 100 ms regardless); without one, on every tick. */
bool lic_link_due(void)
{
	struct timespec now;
	long elapsed_ms;
	if(!lic_wake_enabled() || atomic_exchange(&pending, false)){
		clock_gettime(CLOCK_MONOTONIC_COARSE, &last_poll);
		atomic_fetch_add(&ticks, 1);
		return true;
	}
	clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
	elapsed_ms = (now.tv_sec - last_poll.tv_sec) * 1000 + (now.tv_nsec - last_poll.tv_nsec) / 1000000;
	if(elapsed_ms < 100) return false;
	last_poll = now;
	atomic_fetch_add(&ticks, 1);
	return true;
}
