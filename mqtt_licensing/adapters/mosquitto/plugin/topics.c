/*
 * Topic rights (MOSQ_EVT_ACL_CHECK) and $license requests (MOSQ_EVT_MESSAGE).
 *
 * ACL_CHECK runs for every PUBLISH a client sends (WRITE) and for every message queued to a
 * subscriber (READ): its path for ordinary topics is a first-byte compare and a flag, plus, while
 * a metered client is connected, one hash lookup and two adds for READ. No allocation, no clock
 * read, no logging per message: whether the license serves is refreshed once per tick
 * (lic_refresh_serving), not read from the clock here.
 */
#include <stdio.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mqtt_protocol.h>

#include "licensing.h"

#define PREFIX "$license/"
#define PREFIX_LEN 9
#define SINK "$license/.consumed" /* where a request goes once the agent has it: nobody may read it */

bool lic_serving;

void lic_refresh_serving(void)
{
	lic_serving = lic_snapshot_current() && lic_snap->serving;
}

static bool is_license_topic(const char *topic)
{
	return topic[0] == '$' && !strncmp(topic, PREFIX, PREFIX_LEN);
}

/* Ordinary topics: a reader (a dashboard, no licensed seat) is held back always, an admin while
 * the license does not serve. */
static int ordinary(const struct mosquitto_evt_acl_check *ed)
{
	struct rec *r;
	/* Mosquitto checks READ for each message it queues to a client: that is the delivery count
	 * of metered connections (a message held in a persistent session is counted when queued). */
	if(lic_metered > 0 && ed->access == MOSQ_ACL_READ && ed->topic[0] != '$'){
		r = lic_find(ed->client);
		if(r && r->metered) lic_usage_count(ed->payloadlen);
	}
	if(lic_serving && lic_readers == 0) return MOSQ_ERR_SUCCESS;
	if(ed->access == MOSQ_ACL_UNSUBSCRIBE) return MOSQ_ERR_SUCCESS;
	r = lic_find(ed->client);
	if(r && (r->role == 'r' || (r->role == 'a' && !lic_serving))) return MOSQ_ERR_ACL_DENIED;
	return MOSQ_ERR_SUCCESS;
}

static bool status_or_events(const char *topic)
{
	return !strcmp(topic, "$license/status") || !strcmp(topic, "$license/events");
}

int lic_on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	const char *client_id;
	struct rec *r;
	(void)event; (void)userdata;

	if(!is_license_topic(ed->topic)) return ordinary(ed);
	client_id = mosquitto_client_id(ed->client);
	r = lic_find(ed->client);
	switch(ed->access){
		case MOSQ_ACL_UNSUBSCRIBE:
			return MOSQ_ERR_SUCCESS;
		case MOSQ_ACL_SUBSCRIBE:
			if(status_or_events(ed->topic)) return lic_reads_status(r) ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
			return r && !r->replaced && client_id && lic_own_reply_subtree(ed->topic, client_id, true)
				? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
		case MOSQ_ACL_READ:
			if(status_or_events(ed->topic)) return lic_reads_status(r) ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
			/* Replies go out only while the connection that asked is live (commands.c); what a
			 * session holds when a CONNECT takes it over was meant for the connection before:
			 * Mosquitto re-checks it during that CONNECT, in the tick the record was born in. */
			if(r == NULL || r->replaced || r->born == lic_tick_count) return MOSQ_ERR_ACL_DENIED;
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

int lic_on_message(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_message *ed = event_data;
	struct rec *r;
	char id[24], role[2] = { 0, 0 };
	char *response_topic = NULL;
	void *correlation = NULL;
	uint16_t correlation_len = 0;
	struct lic_field f[6];
	(void)event; (void)userdata;

	if(!is_license_topic(ed->topic)) return MOSQ_ERR_SUCCESS;
	r = lic_find(ed->client);
	if(r && !r->replaced && (!lic_snap || ed->payloadlen <= lic_snap->max_payload)){
		mosquitto_property_read_string(ed->properties, MQTT_PROP_RESPONSE_TOPIC, &response_topic, false);
		mosquitto_property_read_binary(ed->properties, MQTT_PROP_CORRELATION_DATA, &correlation, &correlation_len, false);
		snprintf(id, sizeof(id), "%llu", r->id);
		role[0] = r->role;
		f[0] = lic_text(id);
		f[1] = lic_text(ed->topic);
		f[2].data = ed->payload;
		f[2].len = ed->payloadlen;
		f[3] = lic_text(response_topic);
		f[4].data = correlation;
		f[4].len = correlation_len;
		f[5] = lic_text(role);
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
