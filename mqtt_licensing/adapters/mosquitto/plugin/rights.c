/* The $license topic rules the plugin checks (core/protocol.py holds the same in Python). */
#include <string.h>

#include "licensing.h"

#define REPLY_ROOT "$license/reply/"
#define REPLY_ROOT_LEN 15

static const char *const REQUEST_TOPICS[] = {
	"$license/activate", "$license/reactivate", "$license/deactivate", "$license/status",
	"$license/offline/request", "$license/offline/cancel", "$license/events/recent", NULL,
};

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

bool lic_is_request_topic(const char *topic)
{
	int i;
	for(i = 0; REQUEST_TOPICS[i]; i++){
		if(!strcmp(topic, REQUEST_TOPICS[i])) return true;
	}
	return false;
}
