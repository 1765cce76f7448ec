/*
 * Mosquitto 2.0 wakes its loop only for its own sockets (or after 100 ms): without help, a reply
 * from the agent would wait up to 100 ms for MOSQ_EVT_TICK. Two ways to end its epoll_wait early:
 *
 *   signal (default)  the agent sends the broker WAKE_SIGNAL after it wrote (the plugin's hello
 *                     tells it which; it finds the broker's pid with SO_PEERCRED). Mosquitto stays
 *                     single-threaded: a second thread would cost every syscall and malloc of its
 *                     loop glibc's multi-threaded paths (measured: ~10% more CPU per message).
 *   thread            a small thread waits for the agent's socket to become readable and signals
 *                     Mosquitto's thread (for an agent that may not signal the broker: another
 *                     user); it never reads, writes or calls into Mosquitto.
 *
 * Either way the handler only marks the socket as worth reading; TICK reads it.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "licensing.h"

#define WAKE_SIGNAL (SIGRTMIN + 5)

static pthread_t main_thread, wake_thread;
static _Atomic bool wake_running;
static int mode = LIC_WAKE_NONE;

static void on_wake_signal(int sig)
{
	(void)sig; /* ends Mosquitto's epoll_wait early; the flag is a lock-free atomic store */
	lic_link_pending();
}

static void *wake_loop(void *arg)
{
	(void)arg;
	while(atomic_load(&wake_running)){
		struct pollfd p[2] = {
			{ .fd = lic_link_listen_fd(), .events = POLLIN },
			{ .fd = lic_link_agent_fd(), .events = POLLIN },
		};
		int n = poll(p, p[1].fd >= 0 ? 2 : 1, 200);
		if(n <= 0) continue;
		if(p[1].fd >= 0 && (p[1].revents & POLLNVAL)){
			usleep(1000);
			continue;
		}
		unsigned long seen = lic_link_ticks();
		pthread_kill(main_thread, WAKE_SIGNAL);
		/* Wait for TICK to read it, rather than signal again for the same bytes. */
		for(int i = 0; i < 2000 && lic_link_ticks() == seen && atomic_load(&wake_running); i++){
			usleep(50);
		}
	}
	return NULL;
}

void lic_wake_start(int wanted)
{
	struct sigaction sa;
	pthread_attr_t attr;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_wake_signal;
	sa.sa_flags = SA_RESTART; /* other syscalls carry on; epoll_wait is never restarted */
	sigemptyset(&sa.sa_mask);
	if(wanted == LIC_WAKE_NONE || sigaction(WAKE_SIGNAL, &sa, NULL) != 0) return;
	mode = wanted;
	if(wanted != LIC_WAKE_THREAD) return;
	main_thread = pthread_self(); /* plugin init runs on Mosquitto's thread */
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	atomic_store(&wake_running, true);
	if(pthread_create(&wake_thread, &attr, wake_loop, NULL) != 0){
		atomic_store(&wake_running, false);
		mode = LIC_WAKE_NONE;
	}
	pthread_attr_destroy(&attr);
}

bool lic_wake_enabled(void)
{
	return mode != LIC_WAKE_NONE;
}

int lic_wake_agent_signal(void)
{
	return mode == LIC_WAKE_SIGNAL ? WAKE_SIGNAL : 0;
}

void lic_wake_stop(void)
{
	if(atomic_exchange(&wake_running, false)){
		pthread_join(wake_thread, NULL);
	}
	mode = LIC_WAKE_NONE;
}
