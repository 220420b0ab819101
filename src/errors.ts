/**
 * errors.ts — the one error hierarchy of quietlink.
 *
 * Every error that leaves a module carries its meaning: the SMTP reply code,
 * the RFC 3463 enhanced status code and the sysexits code are set where the
 * error is raised, never guessed later. The SMTP layer turns an error into a
 * reply line (smtpReply), the CLI into an exit code (exitCodeOf), each in one
 * function below.
 */

/** sysexits(3) codes used by the command line. */
export const EX = {
  OK: 0,
  USAGE: 64,
  DATAERR: 65,
  NOINPUT: 66,
  UNAVAILABLE: 69,
  SOFTWARE: 70,
  OSERR: 71,
  CANTCREAT: 73,
  IOERR: 74,
  TEMPFAIL: 75,
  NOPERM: 77,
  CONFIG: 78,
} as const;
export type ExitCode = (typeof EX)[keyof typeof EX];

export interface QuietlinkErrorOptions {
  cause?: unknown;
  exitCode?: ExitCode;
}

/** Base of every error quietlink raises on purpose. */
export class QuietlinkError extends Error {
  readonly exitCode: ExitCode;
  constructor(message: string, options: QuietlinkErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.exitCode = options.exitCode ?? EX.SOFTWARE;
  }
}

/** A command-line mistake (EX_USAGE). */
export class UsageError extends QuietlinkError {
  constructor(message: string, options: QuietlinkErrorOptions = {}) {
    super(message, { exitCode: EX.USAGE, ...options });
  }
}

/** Bad input data, e.g. a message on stdin that cannot be kept (EX_DATAERR). */
export class DataError extends QuietlinkError {
  constructor(message: string, options: QuietlinkErrorOptions = {}) {
    super(message, { exitCode: EX.DATAERR, ...options });
  }
}

/** The daemon (or another service) is not there (EX_UNAVAILABLE). */
export class UnavailableError extends QuietlinkError {
  constructor(message: string, options: QuietlinkErrorOptions = {}) {
    super(message, { exitCode: EX.UNAVAILABLE, ...options });
  }
}

/** One problem in a configuration file, located as file:line. */
export interface ConfigProblem {
  file: string;
  line: number;
  message: string;
}

export function formatProblem(p: ConfigProblem): string {
  return `${p.file}:${p.line}: ${p.message}`;
}

/** The configuration (or a classic file it names) is wrong (EX_CONFIG). */
export class ConfigError extends QuietlinkError {
  readonly problems: ConfigProblem[];
  constructor(problems: ConfigProblem[], options: QuietlinkErrorOptions = {}) {
    super(problems.map(formatProblem).join('\n'), { exitCode: EX.CONFIG, ...options });
    this.problems = problems;
  }
}

/**
 * An error with an SMTP meaning. `code` is the basic reply code, `enhanced`
 * the RFC 3463 code; 4xx is temporary, 5xx permanent.
 */
export class MailError extends QuietlinkError {
  readonly code: number;
  readonly enhanced: string;
  constructor(code: number, enhanced: string, message: string, options: QuietlinkErrorOptions = {}) {
    super(message, { exitCode: code >= 500 ? EX.DATAERR : EX.TEMPFAIL, ...options });
    this.code = code;
    this.enhanced = enhanced;
  }
  get isTemporary(): boolean {
    return this.code < 500;
  }
}

/** Temporary local failure such as a full disk (EX_TEMPFAIL). */
export class TempFailError extends MailError {
  constructor(code: number, enhanced: string, message: string, options: QuietlinkErrorOptions = {}) {
    super(code, enhanced, message, { exitCode: EX.TEMPFAIL, ...options });
  }
}

/** The link is down: "not now", never "no such domain". */
export class LinkDownError extends MailError {
  constructor(message = 'Link is down, waiting for the next flush window', options: QuietlinkErrorOptions = {}) {
    super(451, '4.4.1', message, { exitCode: EX.TEMPFAIL, ...options });
  }
}

/** A queue file that cannot be read or decoded. */
export class CorruptEnvelopeError extends QuietlinkError {
  constructor(message: string, options: QuietlinkErrorOptions = {}) {
    super(message, { exitCode: EX.DATAERR, ...options });
  }
}

/** An illegal state transition requested from the queue: a programming error. */
export class IllegalTransitionError extends QuietlinkError {}

/** The reply line text for an error in an SMTP session: "5.7.1 Relaying denied". */
export function smtpReply(err: unknown): { code: number; text: string } {
  if (err instanceof MailError) return { code: err.code, text: `${err.enhanced} ${err.message}` };
  return { code: 451, text: '4.3.0 Local error in processing, try again later' };
}

/** The process exit code for an error that reached the command line. */
export function exitCodeOf(err: unknown): ExitCode {
  if (err instanceof QuietlinkError) return err.exitCode;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOSPC' || code === 'EAGAIN') return EX.TEMPFAIL;
  if (code === 'EACCES' || code === 'EPERM') return EX.NOPERM;
  if (code === 'EADDRINUSE' || code === 'EADDRNOTAVAIL') return EX.UNAVAILABLE;
  return EX.SOFTWARE;
}
