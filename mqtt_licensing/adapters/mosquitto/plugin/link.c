/*
 * The Unix socket between the plugin and its agent. Mosquitto runs every callback on its one
 * network thread, so nothing here blocks: the socket is non-blocking, read and written from
 * MOSQ_EVT_TICK (and written at once when a frame is queued), and what the agent is slow to
 * take waits in a bounded buffer.
 *
 * Frames: a 4-byte big-endian length, then a type byte, then fields (4-byte length + bytes).
 * The peer must run as the agent's user (SO_PEERCRED) and open with the agent's hello; anything
 * else, or any malformed frame, closes the connection and changes nothing.
 *
 * wake.c tells when there is something to read; the read itself happens here, on Mosquitto's
 * thread, in TICK.
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

#define MAX_FRAME (32u * 1024 * 1024)   /* a snapshot with every hash, or one reply */
#define SOFT_LIMIT (8u * 1024 * 1024)   /* past this, $license requests are dropped */
#define HARD_LIMIT (64u * 1024 * 1024)  /* past this, the agent is cut off (it resyncs on return) */

struct buffer {
	char *data;
	size_t len, cap, start;
};

static int listen_fd = -1;
static _Atomic int agent_fd = -1;
static long allowed_uid = -1;
static bool agent_up;
static struct buffer in, out;
static char *socket_path;

static _Atomic unsigned long ticks;
static _Atomic bool pending = true; /* the wake thread saw something to read (or to accept) */
static struct timespec last_poll;

static bool reserve(struct buffer *b, size_t more)
{
	if(b->start > 0 && b->start == b->len){
		b->start = b->len = 0;
	}
	if(b->len + more > b->cap){
		size_t cap = b->cap ? b->cap : 65536;
		char *grown;
		if(b->start > 0){
			memmove(b->data, b->data + b->start, b->len - b->start);
			b->len -= b->start;
			b->start = 0;
		}
		while(b->len + more > cap) cap *= 2;
		if(cap != b->cap){
			grown = realloc(b->data, cap);
			if(grown == NULL) return false;
			b->data = grown;
			b->cap = cap;
		}
	}
	return true;
}

static void drop_agent(const char *why)
{
	int fd = atomic_exchange(&agent_fd, -1);
	if(fd >= 0){
		close(fd);
		mosquitto_log_printf(MOSQ_LOG_WARNING, "mqtt-licensing: agent connection closed: %s", why);
	}
	agent_up = false;
	in.len = in.start = 0;
	out.len = out.start = 0;
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
	drop_agent("broker stopping");
	if(listen_fd >= 0){
		close(listen_fd);
		listen_fd = -1;
	}
	if(socket_path){
		unlink(socket_path);
		free(socket_path);
		socket_path = NULL;
	}
	free(in.data);
	free(out.data);
	memset(&in, 0, sizeof(in));
	memset(&out, 0, sizeof(out));
}

bool lic_link_up(void)
{
	return agent_up;
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

static void flush(void)
{
	int fd = atomic_load(&agent_fd);
	while(fd >= 0 && out.len > out.start){
		ssize_t n = send(fd, out.data + out.start, out.len - out.start, MSG_NOSIGNAL | MSG_DONTWAIT);
		if(n > 0){
			out.start += (size_t)n;
		}else if(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)){
			return;
		}else if(n < 0 && errno == EINTR){
			continue;
		}else{
			drop_agent("write failed");
			return;
		}
	}
	if(out.start == out.len) out.start = out.len = 0;
}

static void put32(char *p, uint32_t v)
{
	p[0] = (char)(v >> 24); p[1] = (char)(v >> 16); p[2] = (char)(v >> 8); p[3] = (char)v;
}

static uint32_t get32(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;
	return ((uint32_t)u[0] << 24) | ((uint32_t)u[1] << 16) | ((uint32_t)u[2] << 8) | u[3];
}

static void send_frame(char type, const struct lic_field *fields, int count, bool droppable)
{
	size_t body = 1, pending = out.len - out.start;
	int i;

	for(i = 0; i < count; i++) body += 4 + fields[i].len;
	if(body > MAX_FRAME) return;
	if(droppable && pending > SOFT_LIMIT) return; /* the agent is behind: a request spray stops here */
	if(pending + body > HARD_LIMIT){
		drop_agent("agent not reading (send buffer full); it resyncs when it reconnects");
		return;
	}
	if(!reserve(&out, 4 + body)){
		drop_agent("out of memory");
		return;
	}
	put32(out.data + out.len, (uint32_t)body);
	out.data[out.len + 4] = type;
	out.len += 5;
	for(i = 0; i < count; i++){
		put32(out.data + out.len, fields[i].len);
		if(fields[i].len) memcpy(out.data + out.len + 4, fields[i].data, fields[i].len);
		out.len += 4 + fields[i].len;
	}
	/* A request is written at once (its reply is awaited); connections and disconnections wait
	 * for the end of this turn of Mosquitto's loop (TICK), a few frames per write. */
	if(type == F_MESSAGE) flush();
}

void lic_link_send(char type, const struct lic_field *fields, int count, bool droppable)
{
	if(agent_up) send_frame(type, fields, count, droppable);
}

static void accept_agents(void)
{
	for(;;){
		struct ucred cred;
		socklen_t len = sizeof(cred);
		int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if(fd < 0) return;
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
		mosquitto_log_printf(MOSQ_LOG_INFO, "mqtt-licensing: agent connected");
	}
}

/* Split one frame body into fields; false when it is malformed. */
static bool parse_frame(const char *body, uint32_t len, struct lic_field *fields, int *count)
{
	uint32_t pos = 1;
	*count = 0;
	while(pos < len){
		uint32_t n;
		if(len - pos < 4 || *count == LIC_MAX_FIELDS) return false;
		n = get32(body + pos);
		pos += 4;
		if(n > len - pos) return false;
		fields[*count].data = body + pos;
		fields[*count].len = n;
		(*count)++;
		pos += n;
	}
	return true;
}

static bool field_is(const struct lic_field *f, const char *text)
{
	return f->len == strlen(text) && !memcmp(f->data, text, f->len);
}

/* Mosquitto calls TICK on every turn of its loop: at a high message rate, two syscalls there would
 * cost more than the plugin's every other check. With the wake thread, the socket is read when it
 * said so (and every 100 ms regardless); without it, on every tick. */
static bool due(void)
{
	struct timespec now;
	long elapsed_ms;
	if(!lic_wake_running() || atomic_exchange(&pending, false)){
		clock_gettime(CLOCK_MONOTONIC_COARSE, &last_poll);
		return true;
	}
	clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
	elapsed_ms = (now.tv_sec - last_poll.tv_sec) * 1000 + (now.tv_nsec - last_poll.tv_nsec) / 1000000;
	if(elapsed_ms < 100) return false;
	last_poll = now;
	return true;
}

static long ms_since(const struct timespec *then)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
	return (now.tv_sec - then->tv_sec) * 1000 + (now.tv_nsec - then->tv_nsec) / 1000000;
}

void lic_link_poll(int (*on_frame)(char type, const struct lic_field *fields, int count), void (*on_up)(void))
{
	static struct timespec last_flush;
	/* Connections and disconnections go out every 20 ms at most: under a CONNECT storm, one
	 * write carries many (a request is written at once, and everything queued before it too). */
	if(out.len > out.start && ms_since(&last_flush) >= 20){
		flush();
		clock_gettime(CLOCK_MONOTONIC_COARSE, &last_flush);
	}
	if(!due()) return;
	atomic_fetch_add(&ticks, 1);
	if(listen_fd >= 0) accept_agents();
	for(;;){
		int fd = atomic_load(&agent_fd);
		ssize_t n;
		if(fd < 0) return;
		if(!reserve(&in, 65536)){
			drop_agent("out of memory");
			return;
		}
		n = recv(fd, in.data + in.len, in.cap - in.len, MSG_DONTWAIT);
		if(n == 0){
			drop_agent("the agent went away; the last snapshot is enforced until its valid_until");
			return;
		}
		if(n < 0){
			if(errno == EINTR) continue;
			if(errno != EAGAIN && errno != EWOULDBLOCK) drop_agent("read failed");
			break;
		}
		in.len += (size_t)n;
		while(in.len - in.start >= 4){
			uint32_t len = get32(in.data + in.start);
			struct lic_field fields[LIC_MAX_FIELDS];
			int count;
			const char *body = in.data + in.start + 4;
			char type;
			if(len == 0 || len > MAX_FRAME){
				drop_agent("malformed frame (length); the last good snapshot is kept");
				return;
			}
			if(in.len - in.start - 4 < len) break;
			type = body[0];
			if(!parse_frame(body, len, fields, &count)){
				drop_agent("malformed frame (fields); the last good snapshot is kept");
				return;
			}
			in.start += 4 + len;
			if(!agent_up){
				if(type != F_HELLO || count < 1 || !field_is(&fields[0], LIC_HELLO_AGENT)){
					drop_agent("the peer did not introduce itself as the agent; the last good snapshot is kept");
					return;
				}
				agent_up = true;
				on_up();
			}else if(on_frame(type, fields, count) != 0){
				drop_agent("the agent sent a frame the plugin refuses; the last good snapshot is kept");
				return;
			}
			if(atomic_load(&agent_fd) < 0) return;
		}
		if(in.start == in.len) in.start = in.len = 0;
	}
	flush();
}
