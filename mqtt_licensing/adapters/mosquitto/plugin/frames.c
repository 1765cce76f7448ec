/*
 * Frames over the agent's socket (link.c). Mosquitto runs every callback on its one network
 * thread, so nothing here blocks: the socket is non-blocking, read and written from
 * MOSQ_EVT_TICK (and written at once when a request is queued), and what the agent is slow to
 * take waits in a bounded buffer.
 *
 * A frame: a 4-byte big-endian length, then a type byte, then fields (4-byte length + bytes).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "licensing.h"

#define MAX_FRAME (32u * 1024 * 1024)   /* a snapshot with every hash, or one reply */
#define SOFT_LIMIT (8u * 1024 * 1024)   /* past this, $license requests are dropped */
#define HARD_LIMIT (64u * 1024 * 1024)  /* past this, the agent is cut off (it resyncs on return) */

struct buffer {
	char *data;
	size_t len, cap, start;
};

static struct buffer in, out;

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

void lic_frames_reset(void)
{
	in.len = in.start = 0;
	out.len = out.start = 0;
}

void lic_frames_free(void)
{
	free(in.data);
	free(out.data);
	memset(&in, 0, sizeof(in));
	memset(&out, 0, sizeof(out));
}

static void flush(void)
{
	int fd = lic_link_agent_fd();
	while(fd >= 0 && out.len > out.start){
		ssize_t n = send(fd, out.data + out.start, out.len - out.start, MSG_NOSIGNAL | MSG_DONTWAIT);
		if(n > 0){
			out.start += (size_t)n;
		}else if(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)){
			return;
		}else if(n < 0 && errno == EINTR){
			continue;
		}else{
			lic_link_drop("write failed");
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
	size_t body = 1, waiting = out.len - out.start;
	int i;

	for(i = 0; i < count; i++) body += 4 + fields[i].len;
	if(body > MAX_FRAME) return;
	if(droppable && waiting > SOFT_LIMIT) return; /* the agent is behind: a request spray stops here */
	if(waiting + body > HARD_LIMIT){
		lic_link_drop("agent not reading (send buffer full); it resyncs when it reconnects");
		return;
	}
	if(!reserve(&out, 4 + body)){
		lic_link_drop("out of memory");
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
	if(lic_link_up()) send_frame(type, fields, count, droppable);
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

static long ms_since(const struct timespec *then)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
	return (now.tv_sec - then->tv_sec) * 1000 + (now.tv_nsec - then->tv_nsec) / 1000000;
}

/* The frames complete in the input buffer; false when the agent was cut off. */
static bool dispatch(int (*on_frame)(char type, const struct lic_field *fields, int count), void (*on_up)(void))
{
	while(in.len - in.start >= 4){
		uint32_t len = get32(in.data + in.start);
		struct lic_field fields[LIC_MAX_FIELDS];
		int count;
		const char *body = in.data + in.start + 4;
		char type;
		if(len == 0 || len > MAX_FRAME){
			lic_link_drop("malformed frame (length); the last good snapshot is kept");
			return false;
		}
		if(in.len - in.start - 4 < len) break;
		type = body[0];
		if(!parse_frame(body, len, fields, &count)){
			lic_link_drop("malformed frame (fields); the last good snapshot is kept");
			return false;
		}
		in.start += 4 + len;
		if(!lic_link_up()){
			if(type != F_HELLO || count < 1 || !field_is(&fields[0], LIC_HELLO_AGENT)){
				lic_link_drop("the peer did not introduce itself as the agent; the last good snapshot is kept");
				return false;
			}
			lic_link_set_up(true);
			on_up();
		}else if(on_frame(type, fields, count) != 0){
			lic_link_drop("the agent sent a frame the plugin refuses; the last good snapshot is kept");
			return false;
		}
		if(lic_link_agent_fd() < 0) return false;
	}
	if(in.start == in.len) in.start = in.len = 0;
	return true;
}

/* Read and handle what the agent sent, until the socket has no more (or the agent is cut off). */
static void receive(int (*on_frame)(char type, const struct lic_field *fields, int count), void (*on_up)(void))
{
	for(;;){
		int fd = lic_link_agent_fd();
		ssize_t n;
		if(fd < 0) return;
		if(!reserve(&in, 65536)){
			lic_link_drop("out of memory");
			return;
		}
		n = recv(fd, in.data + in.len, in.cap - in.len, MSG_DONTWAIT);
		if(n == 0){
			lic_link_drop("the agent went away; the last snapshot is enforced until its valid_until");
			return;
		}
		if(n < 0){
			if(errno == EINTR) continue;
			if(errno != EAGAIN && errno != EWOULDBLOCK) lic_link_drop("read failed");
			return;
		}
		in.len += (size_t)n;
		if(!dispatch(on_frame, on_up)) return;
	}
}

bool lic_link_poll(int (*on_frame)(char type, const struct lic_field *fields, int count), void (*on_up)(void))
{
	static struct timespec last_flush;
	/* Connections and disconnections go out every 20 ms at most: under a CONNECT storm, one
	 * write carries many (a request is written at once, and everything queued before it too). */
	if(out.len > out.start && ms_since(&last_flush) >= 20){
		flush();
		clock_gettime(CLOCK_MONOTONIC_COARSE, &last_flush);
	}
	if(!lic_link_due()) return false;
	/* The connected agent first: one that went away (kill -9) is seen gone before its
	 * successor's connection is accepted, not taken for a second agent. */
	receive(on_frame, on_up);
	if(lic_link_accept()) receive(on_frame, on_up);
	flush();
	return true;
}
