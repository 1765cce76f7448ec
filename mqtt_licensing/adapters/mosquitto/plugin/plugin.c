/*
 * mqtt-licensing for Mosquitto 2.0 (plugin API 5): the broker side of the licensing agent.
 *
 *   plugin /path/to/mqtt_licensing.so
 *   plugin_opt_socket /run/mosquitto/mqtt-licensing.sock   (the agent connects here)
 *   plugin_opt_agent_uid 1000                              (default: the broker's own user)
 *
 * Every decision is taken here, from the snapshot the agent pushes (snapshot.c): Mosquitto runs
 * all callbacks on its one network thread, and none of them waits on the agent.
 *   BASIC_AUTH  admits or refuses a CONNECT: credentials, serving, the cap with overage,
 *               client classes' features, the admin cap.
 *   ACL_CHECK   $license/... rights (status and events for readers and admins, replies for their
 *               own client id only, requests only as a live client's PUBLISH: never as a will),
 *               and admin confinement while the license does not serve.
 *   MESSAGE     a $license request goes to the agent (client id, username, role, MQTT 5 response
 *               topic and correlation data) and is delivered to nobody.
 *   DISCONNECT  frees the connection's seat.
 *   TICK        reads the agent's socket: snapshots, publishes (mosquitto_broker_publish), kicks.
 * With the agent gone the last snapshot holds until its valid_until, then only admins get in;
 * an agent that connects is told every live connection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mqtt_protocol.h>

#include "licensing.h"

#define PREFIX "$license/"
#define PREFIX_LEN 9
#define SINK "$license/.consumed" /* where a request goes once the agent has it: nobody may read it */

static mosquitto_plugin_id_t *pid;
static unsigned long long next_id = 1;
static char boot_id[33];
static unsigned long tick_count;
/* Sent to metered connections and not yet handed to the agent: kept while it is away. */
static unsigned long long usage_messages, usage_bytes;
static time_t usage_sent_at;

/* -- frames to the agent ----------------------------------------------------------------- */

static struct lic_field text(const char *s)
{
	struct lic_field f = { s ? s : "", s ? (uint32_t)strlen(s) : 0 };
	return f;
}

static void send_connected(const struct rec *r)
{
	char id[24], role[2] = { r->role, 0 }, proto[8];
	struct lic_field f[7];
	snprintf(id, sizeof(id), "%llu", r->id);
	snprintf(proto, sizeof(proto), "%d", mosquitto_client_protocol_version(r->client));
	f[0] = text(id);
	f[1] = text(r->client_id);
	f[2] = text(r->username ? "1" : "0");
	f[3] = text(r->username);
	f[4] = text(role);
	f[5] = text(mosquitto_client_address(r->client));
	f[6] = text(proto);
	lic_link_send(F_CONNECTED, f, 7, false);
}

static void send_refused(const char *client_id, const char *username, const char *reason)
{
	struct lic_field f[4] = { text(client_id), text(username ? "1" : "0"), text(username), text(reason) };
	lic_link_send(F_REFUSED, f, 4, true);
}

static void on_agent_up(void)
{
	struct rec *r;
	struct lic_field hello[2] = { text(LIC_HELLO_PLUGIN), text(boot_id) };
	lic_link_send(F_HELLO, hello, 2, false);
	for(r = lic_all; r; r = r->next){
		if(!r->replaced) send_connected(r); /* a replaced one is closing: its D frame follows */
	}
}

/* -- admission ----------------------------------------------------------------------------- */

static int refuse(const char *client_id, const char *username, const char *reason)
{
	send_refused(client_id, username, reason);
	return MOSQ_ERR_AUTH;
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	const char *client_id = mosquitto_client_id(ed->client);
	struct rec *r, *previous;
	char role;
	long current;
	(void)event; (void)userdata;

	if(client_id == NULL) return MOSQ_ERR_AUTH;
	role = lic_authenticate(ed->username, ed->password);
	if(role == 0) return refuse(client_id, ed->username, "bad_credentials");
	previous = lic_find_live_id(client_id, ed->client);
	if(role == 'a'){
		if(lic_admins - (previous && previous->role == 'a') >= lic_snap->admin_max) {
			return refuse(client_id, ed->username, "admin_limit");
		}
	}else if(role == 'r'){
		/* A dashboard: let in licensed or not (to see why nothing connects), never a seat. */
		if(lic_readers - (previous && previous->role == 'r') >= lic_snap->reader_max) {
			return refuse(client_id, ed->username, "reader_limit");
		}
	}else{
		if(!lic_snapshot_current() || !lic_snap->serving) return refuse(client_id, ed->username, "not_licensed");
		if(!lic_features_ok(ed->username, client_id)) return refuse(client_id, ed->username, "feature_missing");
		if(lic_snap->metered_refused && lic_is_metered(ed->username, client_id)){
			return refuse(client_id, ed->username, "metering_undelivered");
		}
		current = lic_counted - (previous && previous->role == 'u' ? 1 : 0);
		if(lic_snap->ceiling >= 0 && current >= lic_snap->ceiling) {
			return refuse(client_id, ed->username, "connection_limit");
		}
	}
	r = lic_find(ed->client);
	if(r){ /* a context Mosquitto reuses without a DISCONNECT between: start afresh */
		lic_remove(r);
		lic_free_rec(r);
	}
	r = calloc(1, sizeof(*r));
	if(r == NULL) return MOSQ_ERR_NOMEM;
	r->client = ed->client;
	r->id = next_id++;
	r->client_id = strdup(client_id);
	r->username = ed->username ? strdup(ed->username) : NULL;
	r->role = role;
	r->born = tick_count;
	if(r->client_id == NULL || (ed->username && r->username == NULL)){
		lic_free_rec(r);
		return MOSQ_ERR_NOMEM;
	}
	if(previous){ /* Mosquitto closes it (session take-over): it holds no seat from now on */
		if(previous->role == 'u') lic_counted--;
		previous->replaced = true;
	}
	/* Decided here: its first delivery is counted too. */
	r->metered = lic_is_metered(r->username, r->client_id);
	lic_insert(r);
	send_connected(r);
	return MOSQ_ERR_SUCCESS;
}

static int on_disconnect(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_disconnect *ed = event_data;
	struct rec *r = lic_find(ed->client);
	char id[24];
	struct lic_field f[1];
	(void)event; (void)userdata;

	if(r == NULL) return MOSQ_ERR_SUCCESS;
	lic_remove(r);
	snprintf(id, sizeof(id), "%llu", r->id);
	f[0] = text(id);
	lic_link_send(F_DISCONNECTED, f, 1, false);
	lic_free_rec(r);
	return MOSQ_ERR_SUCCESS;
}

/* -- topic rights ---------------------------------------------------------------------------- */

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	const char *client_id;
	struct rec *r;
	(void)event; (void)userdata;

	/* Mosquitto checks READ for each message it queues to a client: that is the delivery count
	 * of metered connections (a message held in a persistent session is counted when queued). */
	if(lic_metered > 0 && ed->access == MOSQ_ACL_READ && ed->topic[0] != '$'){
		r = lic_find(ed->client);
		if(r && r->metered){
			usage_messages++;
			usage_bytes += ed->payloadlen;
		}
	}
	if(strncmp(ed->topic, PREFIX, PREFIX_LEN)){
		/* Ordinary topics: a reader (a dashboard, no licensed seat) is held back always, an admin
		 * while the license does not serve. */
		bool serving = lic_snapshot_current() && lic_snap->serving;
		if(serving && lic_readers == 0) return MOSQ_ERR_SUCCESS;
		if(ed->access == MOSQ_ACL_UNSUBSCRIBE) return MOSQ_ERR_SUCCESS;
		r = lic_find(ed->client);
		if(r && (r->role == 'r' || (r->role == 'a' && !serving))) return MOSQ_ERR_ACL_DENIED;
		return MOSQ_ERR_SUCCESS;
	}
	client_id = mosquitto_client_id(ed->client);
	r = lic_find(ed->client);
	switch(ed->access){
		case MOSQ_ACL_UNSUBSCRIBE:
			return MOSQ_ERR_SUCCESS;
		case MOSQ_ACL_SUBSCRIBE:
			if(!strcmp(ed->topic, "$license/status") || !strcmp(ed->topic, "$license/events")){
				return lic_reads_status(r) ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
			}
			return r && !r->replaced && client_id && lic_own_reply_subtree(ed->topic, client_id, true)
				? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
		case MOSQ_ACL_READ:
			if(!strcmp(ed->topic, "$license/status") || !strcmp(ed->topic, "$license/events")){
				return lic_reads_status(r) ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
			}
			/* Replies go out only while the connection that asked is live (on_frame); what a session
			 * holds when a CONNECT takes it over was meant for the connection before: Mosquitto
			 * re-checks it during that CONNECT, in the tick the record was born in. */
			if(r == NULL || r->replaced || r->born == tick_count) return MOSQ_ERR_ACL_DENIED;
			return client_id && lic_own_reply_subtree(ed->topic, client_id, false) ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
		case MOSQ_ACL_WRITE:
			/* Mosquitto checks a will at the moment it would send it, after MOSQ_EVT_DISCONNECT
			 * (or, at a take-over, after the newer CONNECT): its record is gone or replaced. */
			if(r == NULL || r->replaced || !lic_is_request_topic(ed->topic)) return MOSQ_ERR_ACL_DENIED;
			if(lic_snap && ed->payloadlen > lic_snap->max_payload) return MOSQ_ERR_ACL_DENIED;
			return MOSQ_ERR_SUCCESS;
		default:
			return MOSQ_ERR_ACL_DENIED;
	}
}

/* -- $license requests ------------------------------------------------------------------------ */

static int on_message(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_message *ed = event_data;
	struct rec *r;
	char id[24], role[2] = { 0, 0 };
	char *response_topic = NULL;
	void *correlation = NULL;
	uint16_t correlation_len = 0;
	struct lic_field f[6];
	(void)event; (void)userdata;

	if(strncmp(ed->topic, PREFIX, PREFIX_LEN)) return MOSQ_ERR_SUCCESS;
	r = lic_find(ed->client);
	if(r && !r->replaced && (!lic_snap || ed->payloadlen <= lic_snap->max_payload)){
		mosquitto_property_read_string(ed->properties, MQTT_PROP_RESPONSE_TOPIC, &response_topic, false);
		mosquitto_property_read_binary(ed->properties, MQTT_PROP_CORRELATION_DATA, &correlation, &correlation_len, false);
		snprintf(id, sizeof(id), "%llu", r->id);
		role[0] = r->role;
		f[0] = text(id);
		f[1] = text(ed->topic);
		f[2].data = ed->payload;
		f[2].len = ed->payloadlen;
		f[3] = text(response_topic);
		f[4].data = correlation;
		f[4].len = correlation_len;
		f[5] = text(role);
		lic_link_send(F_MESSAGE, f, 6, true);
		mosquitto_free(response_topic);
		mosquitto_free(correlation);
	}
	/* Delivered to nobody: a request on $license/status must never look like the status. */
	mosquitto_free(ed->topic);
	ed->topic = mosquitto_strdup(SINK);
	ed->retain = false;
	return ed->topic ? MOSQ_ERR_SUCCESS : MOSQ_ERR_NOMEM;
}

/* -- what the agent sends -------------------------------------------------------------------- */

static char *field_string(const struct lic_field *f)
{
	char *s;
	if(memchr(f->data, '\0', f->len)) return NULL;
	s = malloc(f->len + 1);
	if(s){
		memcpy(s, f->data, f->len);
		s[f->len] = '\0';
	}
	return s;
}

static int on_frame(char type, const struct lic_field *fields, int count)
{
	if(type == F_SNAPSHOT && count == 1){
		struct lic_snapshot *parsed = lic_snapshot_parse(fields[0].data, fields[0].len, lic_snap);
		if(parsed == NULL){
			mosquitto_log_printf(MOSQ_LOG_ERR, "mqtt-licensing: snapshot refused (malformed); the last good one is kept");
			return -1;
		}
		lic_snapshot_free(lic_snap);
		lic_snap = parsed;
		return 0;
	}
	if(type == F_PUBLISH && count == 5){
		/* topic, payload, retain ("0"/"1"), MQTT 5 correlation data (may be empty), and for a
		 * reply the id of the connection that asked (empty: to every subscriber) */
		mosquitto_property *props = NULL;
		char *topic = field_string(&fields[0]);
		int rc;
		if(topic == NULL || strncmp(topic, PREFIX, PREFIX_LEN)){
			free(topic);
			return -1; /* the agent publishes only under $license/ */
		}
		if(fields[4].len > 0){
			char *id = field_string(&fields[4]);
			unsigned long long wanted = id ? strtoull(id, NULL, 10) : 0;
			struct rec *r;
			free(id);
			r = lic_find_id(wanted);
			if(r == NULL || r->replaced){
				free(topic); /* the connection that asked is gone: its reply reaches no one else */
				return 0;
			}
		}
		if(fields[3].len > 0 && fields[3].len <= 0xFFFF){
			mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, fields[3].data, (uint16_t)fields[3].len);
		}
		/* Through the subscriptions, as any message (a client gets no reply it did not subscribe
		 * to). Nothing runs between this TICK and Mosquitto queueing it at the top of its next
		 * loop turn, so the connection checked live above is the one that holds the client id. */
		rc = mosquitto_broker_publish_copy(NULL, topic, (int)fields[1].len, fields[1].data, 1,
				fields[2].len == 1 && fields[2].data[0] == '1', props);
		if(rc != MOSQ_ERR_SUCCESS) mosquitto_property_free_all(&props);
		free(topic);
		return 0;
	}
	if(type == F_KICK && count == 1){
		char *id = field_string(&fields[0]);
		unsigned long long wanted = id ? strtoull(id, NULL, 10) : 0;
		struct rec *r;
		free(id);
		for(r = lic_all; r; r = r->next){
			if(r->id == wanted && !r->replaced){
				mosquitto_kick_client_by_clientid(r->client_id, false);
				break;
			}
		}
		return 0;
	}
	return -1;
}

static int on_tick(int event, void *event_data, void *userdata)
{
	(void)event; (void)event_data; (void)userdata;
	tick_count++;
	lic_link_poll(on_frame, on_agent_up);
	if(usage_messages && lic_link_up()){
		time_t now = time(NULL);
		if(now != usage_sent_at){
			char m[24], b[24];
			struct lic_field f[2] = { { m, 0 }, { b, 0 } };
			f[0].len = (uint32_t)snprintf(m, sizeof(m), "%llu", usage_messages);
			f[1].len = (uint32_t)snprintf(b, sizeof(b), "%llu", usage_bytes);
			lic_link_send(F_USAGE, f, 2, false);
			usage_sent_at = now;
			usage_messages = usage_bytes = 0;
		}
	}
	return MOSQ_ERR_SUCCESS;
}

/* -- plugin entry points --------------------------------------------------------------------- */

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
	bool wake = true;
	unsigned char raw[16];
	int i;
	(void)user_data;

	for(i = 0; i < opt_count; i++){
		if(!strcmp(opts[i].key, "socket")) path = opts[i].value;
		else if(!strcmp(opts[i].key, "agent_uid")) agent_uid = strtol(opts[i].value, NULL, 10);
		else if(!strcmp(opts[i].key, "wake")) wake = strcmp(opts[i].value, "false") != 0;
	}
	if(path == NULL){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqtt-licensing: plugin_opt_socket is required (the agent's Unix socket path)");
		return MOSQ_ERR_INVAL;
	}
	/* getrandom, not OpenSSL's generator: nothing of OpenSSL is loaded until a password is checked */
	if(getrandom(lic_secret, sizeof(lic_secret), 0) != sizeof(lic_secret) || getrandom(raw, sizeof(raw), 0) != sizeof(raw)){
		return MOSQ_ERR_UNKNOWN;
	}
	for(i = 0; i < 16; i++) snprintf(boot_id + 2 * i, 3, "%02x", raw[i]);
	if(lic_link_open(path, agent_uid) != 0){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqtt-licensing: cannot create the agent socket %s", path);
		return MOSQ_ERR_UNKNOWN;
	}
	if(wake) lic_wake_start();
	pid = identifier;
	mosquitto_callback_register(pid, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL);
	mosquitto_callback_register(pid, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
	mosquitto_callback_register(pid, MOSQ_EVT_MESSAGE, on_message, NULL, NULL);
	mosquitto_callback_register(pid, MOSQ_EVT_DISCONNECT, on_disconnect, NULL, NULL);
	mosquitto_callback_register(pid, MOSQ_EVT_TICK, on_tick, NULL, NULL);
	mosquitto_log_printf(MOSQ_LOG_INFO, "mqtt-licensing: waiting for the agent on %s; no client is admitted before its first snapshot", path);
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *user_data, struct mosquitto_opt *opts, int opt_count)
{
	(void)user_data; (void)opts; (void)opt_count;

	mosquitto_callback_unregister(pid, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	mosquitto_callback_unregister(pid, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	mosquitto_callback_unregister(pid, MOSQ_EVT_MESSAGE, on_message, NULL);
	mosquitto_callback_unregister(pid, MOSQ_EVT_DISCONNECT, on_disconnect, NULL);
	mosquitto_callback_unregister(pid, MOSQ_EVT_TICK, on_tick, NULL);
	lic_link_close();
	lic_clear_records();
	lic_snapshot_free(lic_snap);
	lic_snap = NULL;
	return MOSQ_ERR_SUCCESS;
}
