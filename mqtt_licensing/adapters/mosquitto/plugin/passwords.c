/*
 * Password hashes the agent's config holds, verified in the broker's thread.
 *
 *   scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>   mqtt-licensing hash-password (OpenSSL EVP_PBE_scrypt)
 *   $7$<iterations>$<salt b64>$<hash b64>       mosquitto_passwd: PBKDF2-HMAC-SHA512
 *   $6$<salt b64>$<hash b64>                    mosquitto 1.6 and older: SHA-512(password + salt)
 *
 * scrypt costs tens of milliseconds on purpose, and Mosquitto runs every callback on its one
 * network thread: licensing.c remembers a password once verified (a keyed SHA-256 of it) and
 * caps how many full checks run per second, so a password spray cannot stall the broker.
 */
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "licensing.h"

#define MAX_DIGEST 128
#define MAX_SALT 128
#define MAX_PBKDF2_ITERATIONS 10000000L
#define MAX_SCRYPT_MEM (256UL * 1024 * 1024)

static int b64_value(char c)
{
	if(c >= 'A' && c <= 'Z') return c - 'A';
	if(c >= 'a' && c <= 'z') return c - 'a' + 26;
	if(c >= '0' && c <= '9') return c - '0' + 52;
	if(c == '+') return 62;
	if(c == '/') return 63;
	return -1;
}

/* Standard base64 with padding; returns the decoded length or -1. */
static int b64_decode(const char *in, size_t inlen, unsigned char *out, size_t outmax)
{
	size_t i, n = 0;
	unsigned int acc = 0;
	int bits = 0;

	while(inlen > 0 && in[inlen-1] == '=') inlen--;
	for(i = 0; i < inlen; i++){
		int v = b64_value(in[i]);
		if(v < 0) return -1;
		acc = (acc << 6) | (unsigned int)v;
		bits += 6;
		if(bits >= 8){
			bits -= 8;
			if(n >= outmax) return -1;
			out[n++] = (unsigned char)((acc >> bits) & 0xFF);
		}
	}
	return (int)n;
}

/* Split "a$b$c" into at most max parts (pointers into a copy the caller frees). */
static int split(const char *text, char **copy, char **parts, int max)
{
	int count = 0;
	char *p;

	*copy = strdup(text);
	if(*copy == NULL) return 0;
	p = *copy;
	parts[count++] = p;
	while((p = strchr(p, '$')) != NULL){
		*p++ = '\0';
		if(count == max) return max + 1;
		parts[count++] = p;
	}
	return count;
}

static int decode_pair(const char *salt_b64, const char *hash_b64,
		unsigned char *salt, int *saltlen, unsigned char *digest, int *digestlen)
{
	*saltlen = b64_decode(salt_b64, strlen(salt_b64), salt, MAX_SALT);
	*digestlen = b64_decode(hash_b64, strlen(hash_b64), digest, MAX_DIGEST);
	return *saltlen > 0 && *digestlen > 0;
}

int lic_password_matches(const char *password, const char *encoded)
{
	char *copy = NULL, *parts[8];
	unsigned char salt[MAX_SALT], digest[MAX_DIGEST], computed[MAX_DIGEST];
	int saltlen = 0, digestlen = 0, count, ok = 0;
	size_t pwlen = strlen(password);

	if(encoded == NULL) return 0;
	count = split(encoded, &copy, parts, 7);
	if(copy == NULL) return 0;
	if(!strncmp(encoded, "scrypt$", 7) && count == 6){
		unsigned long long n = strtoull(parts[1], NULL, 10);
		unsigned long long r = strtoull(parts[2], NULL, 10);
		unsigned long long p = strtoull(parts[3], NULL, 10);
		if(decode_pair(parts[4], parts[5], salt, &saltlen, digest, &digestlen)
				&& EVP_PBE_scrypt(password, pwlen, salt, (size_t)saltlen, n, r, p,
					MAX_SCRYPT_MEM, computed, (size_t)digestlen) == 1){
			ok = CRYPTO_memcmp(computed, digest, (size_t)digestlen) == 0;
		}
	}else if(!strncmp(encoded, "$7$", 3) && count == 5){
		long iterations = strtol(parts[2], NULL, 10);
		if(iterations > 0 && iterations <= MAX_PBKDF2_ITERATIONS
				&& decode_pair(parts[3], parts[4], salt, &saltlen, digest, &digestlen)
				&& PKCS5_PBKDF2_HMAC(password, (int)pwlen, salt, saltlen, (int)iterations,
					EVP_sha512(), digestlen, computed) == 1){
			ok = CRYPTO_memcmp(computed, digest, (size_t)digestlen) == 0;
		}
	}else if(!strncmp(encoded, "$6$", 3) && count == 4){
		if(decode_pair(parts[2], parts[3], salt, &saltlen, digest, &digestlen) && digestlen == SHA512_DIGEST_LENGTH){
			EVP_MD_CTX *ctx = EVP_MD_CTX_new();
			unsigned int len = 0;
			if(ctx && EVP_DigestInit_ex(ctx, EVP_sha512(), NULL) == 1
					&& EVP_DigestUpdate(ctx, password, pwlen) == 1
					&& EVP_DigestUpdate(ctx, salt, (size_t)saltlen) == 1
					&& EVP_DigestFinal_ex(ctx, computed, &len) == 1){
				ok = CRYPTO_memcmp(computed, digest, SHA512_DIGEST_LENGTH) == 0;
			}
			EVP_MD_CTX_free(ctx);
		}
	}
	free(copy);
	return ok;
}

void lic_password_key(const unsigned char *secret, size_t secretlen, const char *password, unsigned char out[32])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int len = 0;

	memset(out, 0, 32);
	if(ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1
			&& EVP_DigestUpdate(ctx, secret, secretlen) == 1
			&& EVP_DigestUpdate(ctx, password, strlen(password)) == 1){
		EVP_DigestFinal_ex(ctx, out, &len);
	}
	EVP_MD_CTX_free(ctx);
}
