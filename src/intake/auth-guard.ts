/**
 * intake/auth-guard.ts — SMTP AUTH against the users file of smtp.auth, made
 * slow for guessers and silent about who exists (SPEC §9 "Abuse").
 *
 * - verifyUser(): `user:scrypt$SALT$HASH` lines, salt and hash in base64
 *   (scrypt N=16384, r=8, p=1, 64-byte key). A user that is not in the file
 *   costs one scrypt with the same parameters on a dummy salt, so the time
 *   an answer takes tells nothing about which users exist.
 * - At most MAX_AUTH_FAILURES failed attempts a session; the next AUTH gets
 *   `421 4.7.0` and the session is closed (decided here, carried out by
 *   smtp-intake.ts). Each failure is answered only after authFailureDelay().
 *
 * Reads the users file at every attempt (a change needs no reload); a file
 * that cannot be read rejects the promise (the caller answers 454).
 */
import fs from 'node:fs';
import crypto from 'node:crypto';

export const MAX_AUTH_FAILURES = 3;
export const AUTH_DELAY_STEP_MS = 1_000;
const KEY_LENGTH = 64;
const DUMMY_SALT = Buffer.from('cXVpZXRsaW5rLWR1bW15', 'base64');

/** Should this AUTH attempt be refused outright (421), after `failures` failed ones? */
export function isAuthLocked(failures: number): boolean {
  return failures >= MAX_AUTH_FAILURES;
}

/** How long the reply to the `failures`-th failed attempt waits (ms): 1 s, 2 s, 3 s. */
export function authFailureDelay(failures: number): number {
  return Math.min(Math.max(failures, 1), MAX_AUTH_FAILURES) * AUTH_DELAY_STEP_MS;
}

function scrypt(password: string, salt: Buffer, length: number): Promise<Buffer> {
  return new Promise((resolve, reject) => crypto.scrypt(password, salt, length, (err, key) => (err ? reject(err) : resolve(key))));
}

/** Checks a password against a users file; an unknown user costs a dummy scrypt. */
export async function verifyUser(file: string, user: string, password: string): Promise<boolean> {
  const text = await fs.promises.readFile(file, 'utf8');
  for (const line of text.split(/\r?\n/)) {
    const m = /^([^:#\s]+):scrypt\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/.exec(line.trim());
    if (!m || m[1] !== user) continue;
    const expected = Buffer.from(m[3], 'base64');
    const got = await scrypt(password, Buffer.from(m[2], 'base64'), expected.length);
    return got.length === expected.length && crypto.timingSafeEqual(got, expected);
  }
  await scrypt(password, DUMMY_SALT, KEY_LENGTH);
  return false;
}
