// Who the page is connected as, and what the bus says when it refuses something.
//
// Without credentials the set-up's WebSocket listener binds the page to the read-only `dashboard`
// user (no_auth_user): live subjects and queries only. An operator signs in with the `operator`
// user's password (typed by the human, kept only in memory); it may also send `engine.exec` and
// `dispatch.cmd.request-datasets`. The bus refuses anything else with a permissions violation.

/** What the header shows for a connection made with `user` (`null`: none given); `authRequired`
 * is the server's INFO flag (false: a server without accounts, where anonymous may do anything). */
export function identity(user: string | null, authRequired = true): { label: string; title: string } {
  if (!user && !authRequired) {
    return { label: 'anonymous (no NATS accounts)', title: 'The NATS server has no accounts or users: every client may do anything.' };
  }
  if (!user) {
    return {
      label: 'anonymous (read-only)',
      title: 'No credentials: under the set-up\'s NATS accounts the read-only "dashboard" user (live subjects and queries). Sign in as operator to exec and request datasets.',
    };
  }
  return { label: user, title: `Signed in as NATS user "${user}" (the password is kept in this page's memory only)` };
}

/** The permissions violation in an error (or its causes) from the NATS client, if there is one. */
export function permissionViolation(err: unknown): { subject: string; operation: string; message: string } | null {
  let e: any = err;
  for (let depth = 0; e && depth < 5; depth++, e = e.cause) {
    const message = String(e.message ?? e);
    if (e.name === 'PermissionViolationError' || /permissions violation/i.test(message)) {
      const m = message.match(/(Publish|Subscription) to "([^"]+)"/i);
      return {
        subject: e.subject || (m ? m[2] : ''),
        operation: e.operation || (m ? m[1].toLowerCase() : 'publish'),
        message: message.replace(/^'|'$/g, ''),
      };
    }
  }
  return null;
}

/** True when the error says the server refused the credentials. */
export function isAuthError(err: unknown): boolean {
  let e: any = err;
  for (let depth = 0; e && depth < 5; depth++, e = e.cause) {
    if (e.name === 'AuthorizationError' || /authorization violation|authentication/i.test(String(e.message ?? e))) return true;
  }
  return false;
}

/** The text a form shows when the bus refused its request, saying who the page is and what to do. */
export function refusalText(v: { subject: string; message: string }, user: string | null): string {
  const who = user ? `signed in as ${user}` : 'anonymous: the read-only dashboard user';
  const hint = user ? `${user} may not send this` : 'sign in as operator to send it';
  return `the bus refused ${v.subject || 'the request'} (${v.message}); connected ${who}; ${hint}`;
}
