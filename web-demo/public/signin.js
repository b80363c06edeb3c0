// Sign-in: a name turned into a token by the server's development sign-in, or a pasted token.
// The session lives in sessionStorage, so that each tab can be a different person.

import { ConfabError, devSignIn } from "./confab.js";
import { describeError, setError, userIdFrom } from "./util.js";

const SESSION_KEY = "confab.session";
const NOTICE_KEY = "confab.notice";

const $ = (id) => document.getElementById(id);

export function loadSession() {
  try {
    const session = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    return session && session.token && session.user ? session : null;
  } catch {
    return null;
  }
}

/** The claims of a JWT, unverified (the server verifies; this only names the user). */
function claimsOf(token) {
  const part = token.split(".")[1] || "";
  const json = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(json, (c) => c.charCodeAt(0))));
}

export function showSignIn(onSignedIn) {
  $("app").hidden = true;
  $("signin").hidden = false;
  const name = $("signin-name");
  const idHint = $("signin-id");
  const update = () => {
    idHint.textContent = userIdFrom(name.value) || "—";
  };
  name.addEventListener("input", update);
  update();
  name.focus();
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = $("signin-error");
    setError(error, "");
    const submit = $("signin-submit");
    const pasted = $("signin-token").value.trim();
    try {
      submit.disabled = true;
      let session;
      if (pasted) {
        let claims;
        try {
          claims = claimsOf(pasted);
        } catch {
          throw new Error("That does not look like a JWT.");
        }
        session = { token: pasted, user: claims.sub, name: claims.name || claims.sub };
      } else {
        const user = userIdFrom(name.value);
        if (!user) throw new Error("Type a name (letters or digits).");
        const display = name.value.trim();
        const { token } = await devSignIn({ user, name: display });
        session = { token, user, name: display };
      }
      sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
      $("signin").hidden = true;
      onSignedIn(session);
    } catch (err) {
      if (err instanceof ConfabError && err.code === "not_found") {
        setError(error, "Development sign-in is off on this server (it needs the generated key and a loopback address). Paste a token instead.");
        document.querySelector(".token-option").open = true;
      } else {
        setError(error, err instanceof ConfabError ? describeError(err) : err.message);
      }
    } finally {
      submit.disabled = false;
    }
  });
}

/** Forgets the session; `notice` is shown once after the reload. */
export function clearSession(notice) {
  sessionStorage.removeItem(SESSION_KEY);
  if (notice) sessionStorage.setItem(NOTICE_KEY, notice);
}

/** The notice left by {@link clearSession}, once. */
export function takeNotice() {
  const notice = sessionStorage.getItem(NOTICE_KEY);
  sessionStorage.removeItem(NOTICE_KEY);
  return notice;
}
