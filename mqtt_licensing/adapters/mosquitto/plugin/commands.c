/*
 * What the agent sends, handled on Mosquitto's thread in MOSQ_EVT_TICK: a snapshot (the rules),
 * a publish (status, events, replies, through mosquitto_broker_publish so no client can forge
 * them), a kick (enforce_existing), a usage acknowledgement. A frame the plugin refuses cuts the
 * agent off (link.c) and changes nothing.
 */
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mqtt_protocol.h>

#include "licensing.h"

#define PREFIX "$license/"
#define PREFIX_LEN 9

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

static unsigned long long field_id(const struct lic_field *f)
{
	char *id = field_string(f);
	unsigned long long value = id ? strtoull(id, NULL, 10) : 0;
	free(id);
	return value;
}

static int take_snapshot(const struct lic_field *text)
{
	struct lic_snapshot *parsed = lic_snapshot_parse(text->data, text->len, lic_snap);
	if(parsed == NULL){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqtt-licensing: snapshot refused (malformed); the last good one is kept");
		return -1;
	}
	lic_snapshot_free(lic_snap);
	lic_snap = parsed;
	lic_refresh_serving();
	return 0;
}

/* topic, payload, retain ("0"/"1"), MQTT 5 correlation data (may be empty), and for a reply the
 * id of the connection that asked (empty: to every subscriber) */
static int publish(const struct lic_field *fields)
{
	mosquitto_property *props = NULL;
	char *topic = field_string(&fields[0]);
	int rc;
	if(topic == NULL || strncmp(topic, PREFIX, PREFIX_LEN)){
		free(topic);
		return -1; /* the agent publishes only under $license/ */
	}
	if(fields[4].len > 0){
		struct rec *r = lic_find_id(field_id(&fields[4]));
		if(r == NULL || r->replaced){
			free(topic); /* the connection that asked is gone: its reply reaches no one else */
			return 0;
		}
	}
	if(fields[3].len > 0 && fields[3].len <= 0xFFFF){
		mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, fields[3].data, (uint16_t)fields[3].len);
	}
	/* Through the subscriptions, as any message (a client gets no reply it did not subscribe to).
	 * Nothing runs between this TICK and Mosquitto queueing it at the top of its next loop turn,
	 * so the connection checked live above is the one that holds the client id. */
	rc = mosquitto_broker_publish_copy(NULL, topic, (int)fields[1].len, fields[1].data, 1,
			fields[2].len == 1 && fields[2].data[0] == '1', props);
	if(rc != MOSQ_ERR_SUCCESS) mosquitto_property_free_all(&props);
	free(topic);
	return 0;
}

static void kick(const struct lic_field *id)
{
	unsigned long long wanted = field_id(id);
	struct rec *r;
	for(r = lic_all; r; r = r->next){
		if(r->id == wanted && !r->replaced){
			mosquitto_kick_client_by_clientid(r->client_id, false);
			return;
		}
	}
}

int lic_on_frame(char type, const struct lic_field *fields, int count)
{
	if(type == F_SNAPSHOT && count == 1) return take_snapshot(&fields[0]);
	if(type == F_PUBLISH && count == 5) return publish(fields);
	if(type == F_KICK && count == 1){
		kick(&fields[0]);
		return 0;
	}
	if(type == F_USAGE_ACK && count == 1) return lic_usage_acknowledged(&fields[0]) ? 0 : -1;
	return -1;
}
