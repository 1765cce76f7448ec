/* Shared between the plugin's files: the snapshot the agent pushes and the link to the agent. */
#ifndef MQTT_LICENSING_H
#define MQTT_LICENSING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define LIC_HELLO_AGENT "mqtt-licensing-agent/1"
#define LIC_HELLO_PLUGIN "mqtt-licensing-plugin/1"

/* Frame types. Plugin -> agent: hello, connected, disconnected, refused, message.
 * Agent -> plugin: hello, snapshot, publish, kick. */
#define F_HELLO 'H'
#define F_CONNECTED 'C'
#define F_DISCONNECTED 'D'
#define F_REFUSED 'R'
#define F_MESSAGE 'M'
#define F_SNAPSHOT 'S'
#define F_PUBLISH 'P'
#define F_KICK 'K'
#define F_USAGE 'U'    /* plugin -> agent: a usage batch (sequence, messages, bytes sent to metered connections) */
#define F_USAGE_ACK 'A' /* agent -> plugin: that batch is on disk (sequence) */

struct lic_user {
	char *name;
	char *hash;
	char role; /* 'a' admin, 'r' reader, 'u' user */
	bool verified; /* a password was verified against this hash: its keyed digest is in key */
	unsigned char key[32];
};

struct lic_class {
	char kind; /* 'u' username, 'p' client id prefix */
	bool ok;   /* every feature this class needs is granted */
	bool metered; /* one of its features is metered: what its connections are sent is counted */
	char *value;
};

struct lic_snapshot {
	bool serving;
	bool anonymous;
	bool base_ok;
	bool metered_refused; /* metering: required and usage overdue: metered classes are refused */
	long ceiling; /* -1: unlimited */
	long admin_max;
	long reader_max;
	long long valid_until;
	uint32_t max_payload;
	char *dummy_hash;
	struct lic_user *users;
	size_t user_count;
	struct lic_class *classes;
	size_t class_count;
};

/* A frame field: bytes and their length (not NUL-terminated in the buffer). */
struct lic_field {
	const char *data;
	uint32_t len;
};

#define LIC_MAX_FIELDS 8

struct mosquitto;

/* A connection the plugin admitted (records.c). */
struct rec {
	struct mosquitto *client;
	unsigned long long id;
	char *client_id;
	char *username;
	char role;
	bool replaced; /* a newer CONNECT took its client id: no seat, no $license publish */
	unsigned long born; /* the tick it connected in (see on_acl_check: MOSQ_ACL_READ) */
	bool metered; /* of a metered client class: what it is sent is counted */
	struct rec *next_by_ptr, *next_by_id, *prev, *next;
};

/* records.c: the live connections, by client pointer and by client id */
extern struct rec *lic_all;
extern long lic_counted, lic_admins, lic_readers, lic_metered; /* seats held, admins, readers, metered */
struct rec *lic_find(const struct mosquitto *client);
struct rec *lic_find_live_id(const char *client_id, const struct mosquitto *except);
struct rec *lic_find_id(unsigned long long id);
void lic_insert(struct rec *r);
void lic_remove(struct rec *r);
void lic_free_rec(struct rec *r);
void lic_clear_records(void);

/* admission.c: who gets in, from the snapshot */
extern struct lic_snapshot *lic_snap;
extern unsigned char lic_secret[32];
bool lic_snapshot_current(void);
char lic_authenticate(const char *username, const char *password);
bool lic_features_ok(const char *username, const char *client_id);
bool lic_is_metered(const char *username, const char *client_id);

/* rights.c: the $license topic rules */
bool lic_reads_status(const struct rec *r);
bool lic_own_reply_subtree(const char *topic, const char *client_id, bool filter);
bool lic_is_request_topic(const char *topic);

/* passwords.c */
int lic_password_matches(const char *password, const char *encoded);
void lic_password_key(const unsigned char *secret, size_t secretlen, const char *password, unsigned char out[32]);

/* snapshot.c */
struct lic_snapshot *lic_snapshot_parse(const char *text, size_t len, const struct lic_snapshot *previous);
void lic_snapshot_free(struct lic_snapshot *snap);

/* connections.c: MOSQ_EVT_BASIC_AUTH and MOSQ_EVT_DISCONNECT, and what the agent learns of them */
extern unsigned long lic_tick_count;
struct lic_field lic_text(const char *s);
bool lic_connections_init(void);
void lic_on_agent_up(void);
int lic_on_basic_auth(int event, void *event_data, void *userdata);
int lic_on_disconnect(int event, void *event_data, void *userdata);

/* topics.c: MOSQ_EVT_ACL_CHECK and MOSQ_EVT_MESSAGE */
extern bool lic_serving; /* the snapshot is current and serves: refreshed every tick and snapshot */
void lic_refresh_serving(void);
int lic_on_acl_check(int event, void *event_data, void *userdata);
int lic_on_message(int event, void *event_data, void *userdata);

/* commands.c: the frames the agent sends */
int lic_on_frame(char type, const struct lic_field *fields, int count);

/* usage.c: what metered connections are sent, in numbered batches kept until the agent has them
 * on disk. Counting is two adds, inline: it runs for every message queued to a metered client. */
extern unsigned long long lic_usage_messages, lic_usage_bytes;
static inline void lic_usage_count(uint32_t payloadlen)
{
	lic_usage_messages++;
	lic_usage_bytes += payloadlen;
}
void lic_usage_tick(void);
void lic_usage_resend(void);
bool lic_usage_acknowledged(const struct lic_field *sequence);

/* link.c: the agent's Unix socket (who may connect, when it is read) */
int lic_link_open(const char *path, long agent_uid);
void lic_link_close(void);
bool lic_link_up(void);
void lic_link_set_up(bool up);
void lic_link_drop(const char *why);
bool lic_link_accept(void);
bool lic_link_due(void);
int lic_link_listen_fd(void);
int lic_link_agent_fd(void);
unsigned long lic_link_ticks(void);
void lic_link_pending(void);

/* frames.c: frames over that socket, buffered without blocking */
void lic_link_send(char type, const struct lic_field *fields, int count, bool droppable);
bool lic_link_poll(int (*on_frame)(char type, const struct lic_field *fields, int count), void (*on_up)(void));
void lic_frames_reset(void);
void lic_frames_free(void);

/* wake.c: ends Mosquitto's epoll_wait when the agent's socket has something to read */
#define LIC_WAKE_NONE 0
#define LIC_WAKE_SIGNAL 1 /* the agent signals the broker after it writes */
#define LIC_WAKE_THREAD 2 /* a thread in the broker watches the socket */
void lic_wake_start(int mode);
bool lic_wake_enabled(void);
int lic_wake_agent_signal(void); /* the signal the agent sends (0: none) */
void lic_wake_stop(void);

#endif
