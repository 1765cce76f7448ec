/*
 * Mosquitto 2.0 wakes its loop only for its own sockets (or after 100 ms): without help, a reply
 * from the agent would wait up to 100 ms for MOSQ_EVT_TICK. A small thread waits for the agent's
 * socket (or the listening one) to become readable and interrupts the loop's epoll_wait with a
 * signal; it never reads, writes or calls into Mosquitto.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "licensing.h"

static pthread_t main_thread, wake_thread;
static _Atomic bool wake_running;

static void on_wake_signal(int sig)
{
	(void)sig; /* its only job is to end Mosquitto's epoll_wait early */
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
		lic_link_pending();
		pthread_kill(main_thread, SIGRTMIN + 5);
		/* Wait for TICK to read it, rather than signal again for the same bytes. */
		for(int i = 0; i < 2000 && lic_link_ticks() == seen && atomic_load(&wake_running); i++){
			usleep(50);
		}
	}
	return NULL;
}

void lic_wake_start(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_wake_signal;
	sa.sa_flags = SA_RESTART; /* other syscalls carry on; epoll_wait is never restarted */
	sigemptyset(&sa.sa_mask);
	if(sigaction(SIGRTMIN + 5, &sa, NULL) != 0) return;
	main_thread = pthread_self(); /* plugin init runs on Mosquitto's thread */
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	atomic_store(&wake_running, true);
	if(pthread_create(&wake_thread, &attr, wake_loop, NULL) != 0){
		atomic_store(&wake_running, false);
	}
	pthread_attr_destroy(&attr);
}

bool lic_wake_running(void)
{
	return atomic_load(&wake_running);
}

void lic_wake_stop(void)
{
	if(atomic_exchange(&wake_running, false)){
		pthread_join(wake_thread, NULL);
	}
}
