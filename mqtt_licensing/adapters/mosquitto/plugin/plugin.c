/*
 * mqtt-licensing for Mosquitto 2.0 (plugin API 5): the broker side of the licensing agent.
 *
 *   plugin /path/to/mqtt_licensing.so
 *   plugin_opt_socket /run/mosquitto/mqtt-licensing.sock   (the agent connects here)
 *   plugin_opt_agent_uid 1000                              (default: the broker's own user)
 *   plugin_opt_wake signal                                 (or thread, false: see wake.c)
 *
 * Every decision is taken here, from the snapshot the agent pushes (snapshot.c): Mosquitto runs
 * all callbacks on its one network thread, and none of them waits on the agent.
 *   BASIC_AUTH  admits or refuses a CONNECT: credentials, serving, the cap with overage,
 *               client classes' features, the admin cap (connections.c).
 *   ACL_CHECK   $license/... rights (status and events for readers and admins, replies for their
 *               own client id only, requests only as a live client's PUBLISH: never as a will),
 *               admin confinement while the license does not serve, metering (topics.c).
 *   MESSAGE     a $license request goes to the agent (client id, username, role, MQTT 5 response
 *               topic and correlation data) and is delivered to nobody (topics.c).
 *   DISCONNECT  frees the connection's seat (connections.c).
 *   TICK        reads the agent's socket: snapshots, publishes (mosquitto_broker_publish), kicks,
 *               usage acknowledgements (commands.c); sends the usage batch (usage.c).
 * With the agent gone the last snapshot holds until its valid_until, then only admins get in;
 * an agent that connects is told every live connection and the unacknowledged usage batch.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include "licensing.h"

static mosquitto_plugin_id_t *pid;

static int on_tick(int event, void *event_data, void *userdata)
{
	(void)event; (void)event_data; (void)userdata;
	lic_tick_count++;
	/* Mosquitto ticks on every turn of its loop: the rest waits until the socket is read (woken,
	 * or every 100 ms), which is often enough for a deadline in seconds and a batch a second. */
	if(!lic_link_poll(lic_on_frame, lic_on_agent_up)) return MOSQ_ERR_SUCCESS;
	lic_refresh_serving(); /* a snapshot's valid_until passes while the agent is away */
	lic_usage_tick();
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	int i;
	for(i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **user_data, struct mosquitto_opt *opts, int opt_count)
{
	const char *path = NULL;
	long agent_uid = -1;
	int wake = LIC_WAKE_SIGNAL;
	int i;
	(void)user_data;

	for(i = 0; i < opt_count; i++){
		if(!strcmp(opts[i].key, "socket")) path = opts[i].value;
		else if(!strcmp(opts[i].key, "agent_uid")) agent_uid = strtol(opts[i].value, NULL, 10);
		else if(!strcmp(opts[i].key, "wake")){
			if(!strcmp(opts[i].value, "thread")) wake = LIC_WAKE_THREAD;
			else if(!strcmp(opts[i].value, "false")) wake = LIC_WAKE_NONE;
			else if(strcmp(opts[i].value, "signal")){
				mosquitto_log_printf(MOSQ_LOG_ERR, "mqtt-licensing: plugin_opt_wake is signal (default), thread or false");
				return MOSQ_ERR_INVAL;
			}
		}
	}
	if(path == NULL){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqtt-licensing: plugin_opt_socket is required (the agent's Unix socket path)");
		return MOSQ_ERR_INVAL;
	}
	/* getrandom, not OpenSSL's generator: nothing of OpenSSL is loaded until a password is checked */
	if(getrandom(lic_secret, sizeof(lic_secret), 0) != sizeof(lic_secret) || !lic_connections_init()){
		return MOSQ_ERR_UNKNOWN;
	}
	if(lic_link_open(path, agent_uid) != 0){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqtt-licensing: cannot create the agent socket %s", path);
		return MOSQ_ERR_UNKNOWN;
	}
	lic_wake_start(wake);
	pid = identifier;
	mosquitto_callback_register(pid, MOSQ_EVT_BASIC_AUTH, lic_on_basic_auth, NULL, NULL);
	mosquitto_callback_register(pid, MOSQ_EVT_ACL_CHECK, lic_on_acl_check, NULL, NULL);
	mosquitto_callback_register(pid, MOSQ_EVT_MESSAGE, lic_on_message, NULL, NULL);
	mosquitto_callback_register(pid, MOSQ_EVT_DISCONNECT, lic_on_disconnect, NULL, NULL);
	mosquitto_callback_register(pid, MOSQ_EVT_TICK, on_tick, NULL, NULL);
	mosquitto_log_printf(MOSQ_LOG_INFO, "mqtt-licensing: waiting for the agent on %s; no client is admitted before its first snapshot", path);
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *user_data, struct mosquitto_opt *opts, int opt_count)
{
	(void)user_data; (void)opts; (void)opt_count;

	mosquitto_callback_unregister(pid, MOSQ_EVT_BASIC_AUTH, lic_on_basic_auth, NULL);
	mosquitto_callback_unregister(pid, MOSQ_EVT_ACL_CHECK, lic_on_acl_check, NULL);
	mosquitto_callback_unregister(pid, MOSQ_EVT_MESSAGE, lic_on_message, NULL);
	mosquitto_callback_unregister(pid, MOSQ_EVT_DISCONNECT, lic_on_disconnect, NULL);
	mosquitto_callback_unregister(pid, MOSQ_EVT_TICK, on_tick, NULL);
	lic_link_close();
	lic_clear_records();
	lic_snapshot_free(lic_snap);
	lic_snap = NULL;
	return MOSQ_ERR_SUCCESS;
}
