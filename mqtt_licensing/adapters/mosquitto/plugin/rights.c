/* The $license topic rules the plugin checks (core/protocol.py holds the same in Python). */
#include <string.h>

#include "licensing.h"

#define PREFIX "$license/"
#define PREFIX_LEN 9
#define REPLY_ROOT "$license/reply/"
#define REPLY_ROOT_LEN 15

static bool client_id_usable(const char *client_id)
{
	return client_id && *client_id && !strpbrk(client_id, "/+#");
}

bool lic_reads_status(const struct rec *r)
{
	return r != NULL && !r->replaced && (r->role == 'a' || r->role == 'r');
}

/* $license/reply/<client id>[/...]: wildcards only below the client's own level. */
bool lic_own_reply_subtree(const char *topic, const char *client_id, bool filter)
{
	size_t n = strlen(client_id);
	const char *rest;
	if(!client_id_usable(client_id) || strncmp(topic, REPLY_ROOT, REPLY_ROOT_LEN)) return false;
	rest = topic + REPLY_ROOT_LEN;
	if(strncmp(rest, client_id, n) || (rest[n] != '\0' && rest[n] != '/')) return false;
	return filter || !strpbrk(rest + n, "+#");
}

/* What a client may publish under $license/: a request, answered by the agent (an operation it
 * does not know, such as the page's $license/role-probe, is answered unknown_operation, as the
 * amqtt adapter does), never a topic the agent publishes on. Every $license publish is consumed
 * (topics.c): this only keeps those topics' names out of the agent's inbox. */
bool lic_is_request_topic(const char *topic)
{
	const char *rest = topic + PREFIX_LEN;
	if(strncmp(topic, PREFIX, PREFIX_LEN) || *rest == '\0' || strpbrk(rest, "+#")) return false;
	if(!strcmp(rest, "events") || !strncmp(topic, REPLY_ROOT, REPLY_ROOT_LEN) || rest[0] == '.') return false;
	return true;
}
