/*
 * The connections the plugin admitted: found by Mosquitto's client pointer (every ACL check) and
 * by client id (a take-over), listed for the agent when it (re)connects, and counted: seats
 * (users not replaced), admins, readers, metered connections.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "licensing.h"

#define BUCKETS 4096

struct rec *lic_all;
long lic_counted, lic_admins, lic_readers, lic_metered;
static struct rec *by_ptr[BUCKETS], *by_id[BUCKETS];

static size_t hash_ptr(const void *p)
{
	uintptr_t v = (uintptr_t)p;
	return (size_t)((v >> 4) ^ (v >> 16)) % BUCKETS;
}

static size_t hash_str(const char *s)
{
	size_t h = 5381;
	while(*s) h = h * 33 + (unsigned char)*s++;
	return h % BUCKETS;
}

struct rec *lic_find(const struct mosquitto *client)
{
	struct rec *r = by_ptr[hash_ptr(client)];
	while(r && r->client != client) r = r->next_by_ptr;
	return r;
}

struct rec *lic_find_live_id(const char *client_id, const struct mosquitto *except)
{
	struct rec *r = by_id[hash_str(client_id)];
	while(r && (r->replaced || r->client == except || strcmp(r->client_id, client_id))) r = r->next_by_id;
	return r;
}

void lic_remove(struct rec *r)
{
	struct rec **p = &by_ptr[hash_ptr(r->client)];
	while(*p != r) p = &(*p)->next_by_ptr;
	*p = r->next_by_ptr;
	p = &by_id[hash_str(r->client_id)];
	while(*p != r) p = &(*p)->next_by_id;
	*p = r->next_by_id;
	if(r->prev) r->prev->next = r->next; else lic_all = r->next;
	if(r->next) r->next->prev = r->prev;
	if(r->role == 'a') lic_admins--;
	else if(r->role == 'r') lic_readers--;
	else if(!r->replaced) lic_counted--;
	if(r->metered) lic_metered--;
}

void lic_free_rec(struct rec *r)
{
	free(r->client_id);
	free(r->username);
	free(r);
}

struct rec *lic_find_id(unsigned long long id)
{
	struct rec *r = lic_all;
	while(r && r->id != id) r = r->next;
	return r;
}

void lic_insert(struct rec *r)
{
	size_t p = hash_ptr(r->client), i = hash_str(r->client_id);
	r->next_by_ptr = by_ptr[p];
	by_ptr[p] = r;
	r->next_by_id = by_id[i];
	by_id[i] = r;
	r->prev = NULL;
	r->next = lic_all;
	if(lic_all) lic_all->prev = r;
	lic_all = r;
	if(r->role == 'a') lic_admins++;
	else if(r->role == 'r') lic_readers++;
	else if(!r->replaced) lic_counted++;
	if(r->metered) lic_metered++;
}

void lic_clear_records(void)
{
	struct rec *r, *next;
	for(r = lic_all; r; r = next){
		next = r->next;
		lic_free_rec(r);
	}
	memset(by_ptr, 0, sizeof(by_ptr));
	memset(by_id, 0, sizeof(by_id));
	lic_all = NULL;
	lic_counted = lic_admins = lic_readers = lic_metered = 0;
}
