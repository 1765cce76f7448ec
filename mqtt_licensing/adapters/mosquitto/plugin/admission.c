/*
 * Who gets in, decided on Mosquitto's thread from the agent's snapshot: credentials (a password
 * verified once is remembered as a keyed SHA-256 of it), features per client class, metering.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/crypto.h>

#include "licensing.h"

#define CHECK_BUDGET_US 250000L /* full password hash checks: at most 250 ms of each second */

struct lic_snapshot *lic_snap;
unsigned char lic_secret[32];
static time_t check_window;
static long check_spent_us;

bool lic_snapshot_current(void)
{
	return lic_snap != NULL && (long long)time(NULL) < lic_snap->valid_until;
}

static const struct lic_user *find_user(const char *name)
{
	size_t i;
	for(i = 0; lic_snap && name && i < lic_snap->user_count; i++){
		if(!strcmp(lic_snap->users[i].name, name)) return &lic_snap->users[i];
	}
	return NULL;
}

/* A full hash check, within a budget of Mosquitto's thread time per second: a password spray
 * cannot stall the broker, and 1,000 cheap ($7$) logins after a restart all get through. */
static bool budgeted_check(const char *password, const char *hash)
{
	struct timespec start, end;
	bool ok;
	time_t now = time(NULL);
	if(now != check_window){
		check_window = now;
		check_spent_us = 0;
	}
	if(check_spent_us >= CHECK_BUDGET_US) return false;
	clock_gettime(CLOCK_MONOTONIC, &start);
	ok = lic_password_matches(password, hash) == 1;
	clock_gettime(CLOCK_MONOTONIC, &end);
	check_spent_us += (end.tv_sec - start.tv_sec) * 1000000L + (end.tv_nsec - start.tv_nsec) / 1000;
	return ok;
}

/* The role of these credentials, or 0 for a refusal. */
char lic_authenticate(const char *username, const char *password)
{
	struct lic_user *user;
	unsigned char key[32];

	if(lic_snap == NULL) return 0;
	user = (struct lic_user *)find_user(username);
	if(username != NULL && (password != NULL || user != NULL)){
		if(user == NULL){
			/* Same cost as a known name: which names exist is not told by timing. */
			budgeted_check(password ? password : "", lic_snap->dummy_hash);
			return 0;
		}
		lic_password_key(lic_secret, sizeof(lic_secret), password ? password : "", key);
		if(user->verified && CRYPTO_memcmp(key, user->key, sizeof(key)) == 0) return user->role;
		if(!budgeted_check(password ? password : "", user->hash)) return 0;
		user->verified = true;
		memcpy(user->key, key, sizeof(key));
		return user->role;
	}
	return lic_snap->anonymous ? 'u' : 0;
}

static bool class_matches(const struct lic_class *c, const char *username, const char *client_id)
{
	return c->kind == 'u'
		? (username != NULL && !strcmp(username, c->value))
		: !strncmp(client_id, c->value, strlen(c->value));
}

bool lic_features_ok(const char *username, const char *client_id)
{
	size_t i;
	if(!lic_snap->base_ok) return false;
	for(i = 0; i < lic_snap->class_count; i++){
		if(!lic_snap->classes[i].ok && class_matches(&lic_snap->classes[i], username, client_id)) return false;
	}
	return true;
}

bool lic_is_metered(const char *username, const char *client_id)
{
	size_t i;
	for(i = 0; i < lic_snap->class_count; i++){
		if(lic_snap->classes[i].metered && class_matches(&lic_snap->classes[i], username, client_id)) return true;
	}
	return false;
}
