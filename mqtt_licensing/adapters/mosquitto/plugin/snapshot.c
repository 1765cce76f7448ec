/*
 * The snapshot the agent pushes: every admission and topic decision is taken from it in C, so no
 * callback waits on Python. Text, one setting per line, fields separated by tabs:
 *
 *   serving 1 | anonymous 1 | base_ok 1 | ceiling 11 (-1 unlimited) | admin_max 4 | reader_max 8
 *   valid_until <unix seconds> | max_payload 65536 | metered_refused 0 | dummy <hash>
 *   user <a|r|u> <name> <hash>
 *   class <u|p> <features granted 0|1> <metered 0|1> <username or client id prefix>
 *
 * A snapshot that does not parse is refused whole: the last good one stays.
 */
#include <stdlib.h>
#include <string.h>

#include "licensing.h"

#define MAX_FIELDS 5

static char *dup_range(const char *s, size_t n)
{
	char *out = malloc(n + 1);
	if(out){
		memcpy(out, s, n);
		out[n] = '\0';
	}
	return out;
}

static bool parse_long(const char *s, long long *out)
{
	char *end;
	if(*s == '\0') return false;
	*out = strtoll(s, &end, 10);
	return *end == '\0';
}

void lic_snapshot_free(struct lic_snapshot *snap)
{
	size_t i;
	if(snap == NULL) return;
	for(i = 0; i < snap->user_count; i++){
		free(snap->users[i].name);
		free(snap->users[i].hash);
	}
	for(i = 0; i < snap->class_count; i++){
		free(snap->classes[i].value);
	}
	free(snap->users);
	free(snap->classes);
	free(snap->dummy_hash);
	free(snap);
}

/* A password verified against the same name and hash before stays verified. */
static void keep_verified(struct lic_user *user, const struct lic_snapshot *previous)
{
	size_t i;
	if(previous == NULL) return;
	for(i = 0; i < previous->user_count; i++){
		const struct lic_user *old = &previous->users[i];
		if(old->verified && !strcmp(old->name, user->name) && !strcmp(old->hash, user->hash)){
			user->verified = true;
			memcpy(user->key, old->key, sizeof(user->key));
			return;
		}
	}
}

static bool parse_line(struct lic_snapshot *snap, char **f, int n, size_t *users_cap, size_t *classes_cap)
{
	long long v;

	if(n == 2 && !strcmp(f[0], "dummy")){
		free(snap->dummy_hash);
		snap->dummy_hash = strdup(f[1]);
		return snap->dummy_hash != NULL;
	}
	if(n == 2 && parse_long(f[1], &v)){
		if(!strcmp(f[0], "serving")) snap->serving = v != 0;
		else if(!strcmp(f[0], "anonymous")) snap->anonymous = v != 0;
		else if(!strcmp(f[0], "base_ok")) snap->base_ok = v != 0;
		else if(!strcmp(f[0], "metered_refused")) snap->metered_refused = v != 0;
		else if(!strcmp(f[0], "ceiling")) snap->ceiling = (long)v;
		else if(!strcmp(f[0], "admin_max")) snap->admin_max = (long)v;
		else if(!strcmp(f[0], "reader_max")) snap->reader_max = (long)v;
		else if(!strcmp(f[0], "valid_until")) snap->valid_until = v;
		else if(!strcmp(f[0], "max_payload") && v > 0 && v < 0xFFFFFFFFLL) snap->max_payload = (uint32_t)v;
		else return false;
		return true;
	}
	if(n == 4 && !strcmp(f[0], "user") && strlen(f[1]) == 1 && strchr("aru", f[1][0])){
		struct lic_user *user;
		if(snap->user_count == *users_cap){
			size_t cap = *users_cap ? *users_cap * 2 : 16;
			struct lic_user *grown = realloc(snap->users, cap * sizeof(*grown));
			if(grown == NULL) return false;
			snap->users = grown;
			*users_cap = cap;
		}
		user = &snap->users[snap->user_count];
		memset(user, 0, sizeof(*user));
		user->role = f[1][0];
		user->name = strdup(f[2]);
		user->hash = strdup(f[3]);
		snap->user_count++;
		return user->name != NULL && user->hash != NULL;
	}
	if(n == 5 && !strcmp(f[0], "class") && (!strcmp(f[1], "u") || !strcmp(f[1], "p"))
			&& (!strcmp(f[2], "0") || !strcmp(f[2], "1")) && (!strcmp(f[3], "0") || !strcmp(f[3], "1"))){
		struct lic_class *cls;
		if(snap->class_count == *classes_cap){
			size_t cap = *classes_cap ? *classes_cap * 2 : 8;
			struct lic_class *grown = realloc(snap->classes, cap * sizeof(*grown));
			if(grown == NULL) return false;
			snap->classes = grown;
			*classes_cap = cap;
		}
		cls = &snap->classes[snap->class_count++];
		cls->kind = f[1][0];
		cls->ok = f[2][0] == '1';
		cls->metered = f[3][0] == '1';
		cls->value = strdup(f[4]);
		return cls->value != NULL;
	}
	return false;
}

struct lic_snapshot *lic_snapshot_parse(const char *text, size_t len, const struct lic_snapshot *previous)
{
	struct lic_snapshot *snap = calloc(1, sizeof(*snap));
	size_t start = 0, users_cap = 0, classes_cap = 0, i;
	bool seen_serving = false, seen_valid = false;

	if(snap == NULL) return NULL;
	snap->ceiling = 0;
	snap->admin_max = 4;
	snap->reader_max = 8;
	snap->max_payload = 65536;
	while(start < len){
		const char *nl = memchr(text + start, '\n', len - start);
		size_t end = nl ? (size_t)(nl - text) : len;
		char *line = dup_range(text + start, end - start);
		char *f[MAX_FIELDS + 1];
		int n = 0;
		char *p = line;
		bool ok;

		if(line == NULL) goto fail;
		if(memchr(line, '\0', end - start) != NULL){ free(line); goto fail; }
		if(*line == '\0'){ free(line); start = end + 1; continue; }
		f[n++] = p;
		while((p = strchr(p, '\t')) != NULL && n <= MAX_FIELDS){
			*p++ = '\0';
			f[n++] = p;
		}
		ok = n <= MAX_FIELDS && parse_line(snap, f, n, &users_cap, &classes_cap);
		if(ok && !strcmp(f[0], "serving")) seen_serving = true;
		if(ok && !strcmp(f[0], "valid_until")) seen_valid = true;
		free(line);
		if(!ok) goto fail;
		start = end + 1;
	}
	if(!seen_serving || !seen_valid || snap->dummy_hash == NULL) goto fail;
	for(i = 0; i < snap->user_count; i++){
		keep_verified(&snap->users[i], previous);
	}
	return snap;
fail:
	lic_snapshot_free(snap);
	return NULL;
}
