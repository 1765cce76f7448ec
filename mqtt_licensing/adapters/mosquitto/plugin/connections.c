/*
 * Admission (MOSQ_EVT_BASIC_AUTH) and departure (MOSQ_EVT_DISCONNECT) of connections, decided
 * from the snapshot without waiting on the agent, and told to the agent as frames: connected,
 * refused, disconnected. An agent that (re)connects is told every live connection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include "licensing.h"

unsigned long lic_tick_count;
static unsigned long long next_id = 1;
static char boot_id[33]; /* this broker run: the agent keys connections (and usage batches) by it */

struct lic_field lic_text(const char *s)
{
	struct lic_field f = { s ? s : "", s ? (uint32_t)strlen(s) : 0 };
	return f;
}

bool lic_connections_init(void)
{
	unsigned char raw[16];
	int i;
	if(getrandom(raw, sizeof(raw), 0) != sizeof(raw)) return false;
	for(i = 0; i < 16; i++) snprintf(boot_id + 2 * i, 3, "%02x", raw[i]);
	return true;
}

static void send_connected(const struct rec *r)
{
	char id[24], role[2] = { r->role, 0 }, proto[8];
	struct lic_field f[7];
	snprintf(id, sizeof(id), "%llu", r->id);
	snprintf(proto, sizeof(proto), "%d", mosquitto_client_protocol_version(r->client));
	f[0] = lic_text(id);
	f[1] = lic_text(r->client_id);
	f[2] = lic_text(r->username ? "1" : "0");
	f[3] = lic_text(r->username);
	f[4] = lic_text(role);
	f[5] = lic_text(mosquitto_client_address(r->client));
	f[6] = lic_text(proto);
	lic_link_send(F_CONNECTED, f, 7, false);
}

void lic_on_agent_up(void)
{
	struct rec *r;
	char wake[8];
	struct lic_field hello[3];
	snprintf(wake, sizeof(wake), "%d", lic_wake_agent_signal()); /* the agent signals it after writing */
	hello[0] = lic_text(LIC_HELLO_PLUGIN);
	hello[1] = lic_text(boot_id);
	hello[2] = lic_text(wake);
	lic_link_send(F_HELLO, hello, 3, false);
	for(r = lic_all; r; r = r->next){
		if(!r->replaced) send_connected(r); /* a replaced one is closing: its D frame follows */
	}
	lic_usage_resend(); /* the batch the agent before did not acknowledge */
}

static int refuse(const char *client_id, const char *username, const char *reason)
{
	struct lic_field f[4] = { lic_text(client_id), lic_text(username ? "1" : "0"), lic_text(username), lic_text(reason) };
	lic_link_send(F_REFUSED, f, 4, true);
	return MOSQ_ERR_AUTH;
}

int lic_on_basic_auth(int event, void *event_data, void *userdata)
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
	r->born = lic_tick_count;
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

int lic_on_disconnect(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_disconnect *ed = event_data;
	struct rec *r = lic_find(ed->client);
	char id[24];
	struct lic_field f[1];
	(void)event; (void)userdata;

	if(r == NULL) return MOSQ_ERR_SUCCESS;
	lic_remove(r);
	snprintf(id, sizeof(id), "%llu", r->id);
	f[0] = lic_text(id);
	lic_link_send(F_DISCONNECTED, f, 1, false);
	lic_free_rec(r);
	return MOSQ_ERR_SUCCESS;
}
