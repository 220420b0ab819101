/**
 * control/users.ts — who a uid is, from /etc/passwd and /etc/group (Node has
 * no getpwuid): the name a submission records, and whether a user may
 * change the queue or the link (root, the daemon's own user, or a member of
 * `quietlink-admin`, SPEC §11). Read on each question: rare, small files,
 * and a user added to the group counts at once. A file that cannot be read
 * means "no such user / not a member", never an error that lets anyone in.
 */
import fs from 'node:fs/promises';

export const ADMIN_GROUP = 'quietlink-admin';

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
}

/** Pure: the entries of an /etc/passwd text. */
export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 4 || line.startsWith('#')) continue;
    const uid = Number(f[2]);
    const gid = Number(f[3]);
    if (Number.isInteger(uid) && Number.isInteger(gid)) out.push({ name: f[0], uid, gid });
  }
  return out;
}

/** Pure: a group's gid and members from an /etc/group text, or null. */
export function parseGroup(text: string, name: string): { gid: number; members: string[] } | null {
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length >= 4 && f[0] === name && Number.isInteger(Number(f[2]))) return { gid: Number(f[2]), members: f[3].split(',').map((m) => m.trim()).filter(Boolean) };
  }
  return null;
}

async function read(file: string): Promise<string> {
  return fs.readFile(file, 'utf8').catch(() => '');
}

/** The user name of a uid (`uid 1234` when it has none). */
export async function userName(uid: number, passwd = '/etc/passwd'): Promise<string> {
  return parsePasswd(await read(passwd)).find((e) => e.uid === uid)?.name ?? `uid ${uid}`;
}

/** Pure: may this uid change the queue or the link? */
export function isAdmin(uid: number, ownUid: number, passwd: PasswdEntry[], admin: { gid: number; members: string[] } | null): boolean {
  if (uid === 0 || uid === ownUid) return true;
  if (!admin) return false;
  const user = passwd.find((e) => e.uid === uid);
  return Boolean(user && (user.gid === admin.gid || admin.members.includes(user.name)));
}

export async function mayAdminister(uid: number, files = { passwd: '/etc/passwd', group: '/etc/group' }): Promise<boolean> {
  const ownUid = process.getuid?.() ?? 0;
  if (uid === 0 || uid === ownUid) return true;
  return isAdmin(uid, ownUid, parsePasswd(await read(files.passwd)), parseGroup(await read(files.group), ADMIN_GROUP));
}
