// The approval page's script. No framework, no build step, nothing from another
// origin; every text from the server goes into textContent, never into HTML.
"use strict";

(function () {
  var TOKEN_KEY = "roomsecrets.participant-token";
  // Close codes the server uses for a refused first frame (roomsecrets.adapters.server).
  var CLOSE_INVALID_TOKEN = 4401;
  var CLOSE_ALREADY_CONNECTED = 4409;
  var NORMAL_CLOSE = 1000;
  var MAX_RETRY_SECONDS = 8;

  var els = {};
  var token = null;
  var claims = null;
  var socket = null;
  var retrySeconds = 1;
  var failedOpens = 0; // connections in a row that never opened
  var retryTimer = null;
  var retryTicker = null;
  var expiryTimer = null;
  var clockOffset = 0; // server clock minus this browser's clock, in seconds
  var connected = false;
  var everConnected = false;
  var prompts = new Map(); // request_id -> {prompt, name, item, approved}
  var pendingDelete = null;
  var deleteOpener = null;

  function byId(id) {
    return document.getElementById(id);
  }

  // --- signing in ------------------------------------------------------------------

  // The token arrives in the URL fragment (#token=...), which browsers never send
  // to a server or in a Referer; keep it for this tab only and take it out of the
  // address bar and the history entry at once.
  function takeToken() {
    var hash = window.location.hash.replace(/^#/, "");
    if (hash) {
      var found = new URLSearchParams(hash).get("token");
      if (found) {
        window.sessionStorage.setItem(TOKEN_KEY, found);
      }
      window.history.replaceState(null, "", window.location.pathname + window.location.search);
    }
    return window.sessionStorage.getItem(TOKEN_KEY);
  }

  // The token's claims, read without checking the signature: only to know which
  // room to open and whom to greet. The server verifies the token on every use.
  function readClaims(jwt) {
    var parts = (jwt || "").split(".");
    if (parts.length !== 3) {
      return null;
    }
    try {
      var text = atob(parts[1].replace(/-/g, "+").replace(/_/g, "/"));
      var bytes = Uint8Array.from(text, function (c) { return c.charCodeAt(0); });
      var data = JSON.parse(new TextDecoder().decode(bytes));
      if (typeof data.room !== "string" || typeof data.sub !== "string") {
        return null;
      }
      return data;
    } catch (e) {
      return null;
    }
  }

  function signOut(reason) {
    window.sessionStorage.removeItem(TOKEN_KEY);
    token = null;
    claims = null;
    connected = false;
    clearTimeout(retryTimer);
    clearInterval(retryTicker);
    clearTimeout(expiryTimer);
    var open = socket;
    socket = null;
    if (open) {
      // A normal close: the person leaves now, no grace period.
      open.close(NORMAL_CLOSE, "signed out");
    }
    prompts.forEach(function (entry) { entry.item.remove(); });
    prompts.clear();
    els.signedIn.hidden = true;
    els.signedOut.hidden = false;
    els.signOut.hidden = true;
    els.who.textContent = "Not signed in";
    if (reason) {
      els.signedOutReason.textContent = reason;
    }
    setConnection("off", "Signed out");
  }

  // --- the connection ----------------------------------------------------------------

  function setConnection(kind, text) {
    els.connection.className = "connection connection-" + kind;
    els.connectionText.textContent = text;
    els.connectionRetry.textContent = "";
  }

  // The server's routes, relative to this page (PUBLIC_URL/approve): the public URL
  // may have a path, when a proxy routes to this server by path.
  function routeUrl(room, rest) {
    return new URL("rooms/" + encodeURIComponent(room) + "/" + rest, window.location.href);
  }

  function socketUrl(room) {
    var url = routeUrl(room, "ws");
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.href;
  }

  function connect() {
    clearTimeout(retryTimer);
    clearInterval(retryTicker);
    if (!token) {
      return;
    }
    setConnection("loading", "Connecting…");
    var ws = new WebSocket(socketUrl(claims.room));
    socket = ws;
    var opened = false;
    ws.onopen = function () {
      opened = true;
      failedOpens = 0;
      // The token goes in the first frame, never in the WebSocket's URL.
      ws.send(JSON.stringify({ type: "authenticate", token: token }));
    };
    ws.onmessage = function (event) {
      if (socket !== ws) {
        return;
      }
      var frame;
      try {
        frame = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      onFrame(frame);
    };
    ws.onclose = function (event) {
      if (socket !== ws) {
        return;
      }
      socket = null;
      connected = false;
      markStale(true);
      renderRequestsState();
      if (event.code === CLOSE_INVALID_TOKEN) {
        signOut("Your sign-in link is not valid any more (expired, or for another server). Ask for a new one.");
        return;
      }
      failedOpens = opened ? 0 : failedOpens + 1;
      var why = event.code === CLOSE_ALREADY_CONNECTED
        ? "This account is open in another tab or program."
        : "Disconnected from the server.";
      if (failedOpens >= 3) {
        // The server refuses a WebSocket from any origin but its own public URL.
        why += " If this goes on, check that the server runs and that you opened the " +
          "sign-in link exactly as it was given (the same address and port).";
      }
      reconnectLater(why);
    };
  }

  function reconnectLater(why) {
    var left = retrySeconds;
    retrySeconds = Math.min(retrySeconds * 2, MAX_RETRY_SECONDS);
    setConnection("down", why);
    // The countdown ticks outside the live region, so a screen reader hears the
    // state once, not every second.
    function show() {
      els.connectionRetry.textContent = "Reconnecting in " + left + " s…";
    }
    show();
    retryTicker = setInterval(function () {
      left -= 1;
      if (left > 0) {
        show();
      }
    }, 1000);
    retryTimer = setTimeout(connect, left * 1000);
  }

  function onFrame(frame) {
    if (frame.type === "authenticated") {
      connected = true;
      everConnected = true;
      retrySeconds = 1;
      clockOffset = frame.server_time - Date.now() / 1000;
      var me = frame.participant || {};
      els.who.textContent = "Signed in as " + (me.name ? me.name + " (" + me.id + ")" : me.id) +
        " · room " + frame.room;
      setConnection("ok", "Connected: new requests appear here as they arrive.");
      // The server sends every open prompt next: start from a clean list.
      prompts.forEach(function (entry) { entry.item.remove(); });
      prompts.clear();
      els.requestsState.textContent = "";
      renderRequestsState();
      loadSecrets();
    } else if (frame.type === "oauth_prompt") {
      addPrompt(frame.prompt, frame.from_participant_name);
    } else if (frame.type === "secret_prompt") {
      addSecretPrompt(frame.prompt, frame.from_participant_name);
    } else if (frame.type === "oauth_prompt_ended") {
      endPrompt(frame.request_id);
    } else if (frame.type === "secrets_changed") {
      loadSecrets();
    }
  }

  // --- requests ---------------------------------------------------------------------

  function serverNow() {
    return Date.now() / 1000 + clockOffset;
  }

  function requesterText(entry) {
    var id = entry.prompt.from_participant_id;
    return entry.name ? entry.name + " (" + id + ")" : id;
  }

  function safeUrl(text) {
    try {
      var url = new URL(text);
      return url.protocol === "https:" || url.protocol === "http:" ? url : null;
    } catch (e) {
      return null;
    }
  }

  function addPrompt(prompt, name) {
    if (!prompt || prompts.has(prompt.request_id)) {
      return;
    }
    var url = safeUrl(prompt.authorization_url);
    var item = els.requestTemplate.content.firstElementChild.cloneNode(true);
    var entry = { prompt: prompt, name: name || null, item: item, approved: false, url: url };
    var host = url ? url.host : "(not a web address)";
    // An MCP server through the broker: the service is the MCP server (by its name
    // from its metadata, and host); the authorization server is where the person
    // signs in; the client is the room server's own, so it is not shown.
    // Only a brokered request's client is the server's own: any other keeps its
    // client row, and its "service" stays the provider the agent named.
    var resource = prompt.resource ? safeUrl(prompt.resource) : null;
    if (prompt.resource && prompt.brokered) {
      var mcpHost = resource ? resource.host : prompt.resource;
      item.querySelector(".mcp-row").hidden = false;
      item.querySelector(".mcp-server").textContent =
        prompt.resource_name ? prompt.resource_name + " (" + mcpHost + ")" : mcpHost;
      item.querySelector(".issuer-row").hidden = false;
      item.querySelector(".issuer-host").textContent = host;
      item.querySelector(".client-row").hidden = true;
      host = mcpHost;
    }
    item.querySelector(".host").textContent = host;
    item.querySelector(".asker-name").textContent = entry.name || prompt.from_participant_id;
    item.querySelector(".asker-id").textContent = entry.name ? "(" + prompt.from_participant_id + ")" : "";
    item.querySelector(".client").textContent = prompt.client_id;
    item.querySelector(".scopes").textContent =
      prompt.scopes && prompt.scopes.length ? prompt.scopes.join(" ") : "(none named: the provider's default)";
    // The asker may have the credential kept for another participant (an agent it
    // acts for), who can then use it without asking: say who, before approving.
    if (prompt.delegate_to && prompt.delegate_to !== prompt.from_participant_id) {
      item.querySelector(".delegate-row").hidden = false;
      item.querySelector(".delegate").textContent = prompt.delegate_to;
    }
    item.setAttribute("aria-label", "Request from " + requesterText(entry) + " for " + host);
    // The agent chose where the provider sends the code: if not to this server,
    // the person should know before approving.
    var back = safeUrl(prompt.redirect_uri);
    if (!back || back.origin !== window.location.origin) {
      var elsewhere = item.querySelector(".elsewhere");
      elsewhere.hidden = false;
      elsewhere.textContent = "After you approve, the provider sends you to " +
        (back ? back.host : prompt.redirect_uri) + ", not to this server.";
    }
    var approve = item.querySelector(".approve");
    var reject = item.querySelector(".reject");
    if (!url) {
      approve.disabled = true;
    }
    approve.addEventListener("click", function () { onApprove(entry); });
    reject.addEventListener("click", function () { onReject(entry); });
    prompts.set(prompt.request_id, entry);
    els.requests.appendChild(item);
    tickPrompt(entry);
    renderRequestsState();
  }

  // A secret prompt: the person types or pastes the secret; it is stored as theirs,
  // delegated as the prompt says, and handed to the asker. The field is a password
  // field, cleared as soon as the answer is sent.
  function addSecretPrompt(prompt, name) {
    if (!prompt || prompts.has(prompt.request_id)) {
      return;
    }
    var url = safeUrl(prompt.url);
    var item = els.secretRequestTemplate.content.firstElementChild.cloneNode(true);
    var entry = { prompt: prompt, name: name || null, item: item, approved: false, secret: true };
    var host = url ? url.host : prompt.url;
    item.querySelector(".host").textContent = host;
    item.querySelector(".asker-name").textContent = entry.name || prompt.from_participant_id;
    item.querySelector(".asker-id").textContent = entry.name ? "(" + prompt.from_participant_id + ")" : "";
    item.querySelector(".url").textContent = prompt.url;
    item.querySelector(".type").textContent = prompt.type;
    item.querySelector(".delegate").textContent = prompt.delegate_to;
    item.setAttribute("aria-label", "Secret request from " + requesterText(entry) + " for " + host);
    var field = item.querySelector(".secret-value");
    field.setAttribute("aria-label", "Secret for " + host);
    item.querySelector(".secret-form").addEventListener("submit", function (event) {
      event.preventDefault();
      onProvideSecret(entry, field);
    });
    item.querySelector(".reject").addEventListener("click", function () { onReject(entry); });
    prompts.set(prompt.request_id, entry);
    els.requests.appendChild(item);
    tickPrompt(entry);
    renderRequestsState();
  }

  function onProvideSecret(entry, field) {
    var value = field.value;
    if (!value) {
      return;
    }
    var buttons = entry.item.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    field.value = "";
    field.disabled = true;
    entry.approved = true;
    var bytes = new TextEncoder().encode(value);
    var binary = "";
    bytes.forEach(function (b) { binary += String.fromCharCode(b); });
    api("provide_secret", { request_id: entry.prompt.request_id, data: btoa(binary) }).then(function () {
      removePrompt(entry, "You gave " + requesterText(entry) + " the secret; it is now among your stored secrets.");
    }, function (error) {
      if (error.status === 404) {
        removePrompt(entry, "The request from " + requesterText(entry) + " had already ended.");
      } else {
        entry.approved = false;
        field.disabled = false;
        buttons.forEach(function (b) { b.disabled = !connected; });
        notify("Could not provide the secret: " + error.message + ".");
      }
    });
  }

  function onApprove(entry) {
    if (!entry.url) {
      return;
    }
    entry.approved = true;
    // A new tab, so this page stays open; no opener and no Referer for the provider.
    window.open(entry.url.href, "_blank", "noopener,noreferrer");
    var progress = entry.item.querySelector(".progress");
    progress.hidden = false;
    progress.textContent = "Continue at " + entry.url.host +
      " in the new tab. This request closes here when the provider sends you back.";
  }

  function onReject(entry) {
    var buttons = entry.item.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    entry.rejecting = true;
    api(entry.secret ? "reject_secret" : "reject_oauth_authorization", {
      request_id: entry.prompt.request_id,
      error: "user_cancelled",
    }).then(function () {
      removePrompt(entry, "You rejected the request from " + requesterText(entry) + ".");
    }, function (error) {
      if (error.status === 404 || error.status === 409) {
        removePrompt(entry, "The request from " + requesterText(entry) + " had already ended.");
      } else {
        entry.rejecting = false;
        buttons.forEach(function (b) { b.disabled = !connected; });
        notify("Could not reject: " + error.message + ".");
      }
    });
  }

  function endPrompt(requestId) {
    var entry = prompts.get(requestId);
    if (!entry) {
      return;
    }
    // The server says only that the prompt ended; what this page did, and the
    // clock (to within a second, the precision of the countdown), say how.
    var what = entry.rejecting
      ? "You rejected the request from " + requesterText(entry) + "."
      : entry.secret && entry.approved
      ? "You gave " + requesterText(entry) + " the secret; it is now among your stored secrets."
      : entry.approved
      ? // Approved or declined there: the server does not say which, so neither do we.
        "The request from " + requesterText(entry) + " ended at the provider. " +
        "If you approved it there, it is now among your stored secrets."
      : entry.prompt.expires_at - 1 <= serverNow()
        ? "The request from " + requesterText(entry) + " timed out."
        : "The request from " + requesterText(entry) + " ended (answered elsewhere, or withdrawn).";
    removePrompt(entry, what);
  }

  function removePrompt(entry, message) {
    if (!prompts.has(entry.prompt.request_id)) {
      return;
    }
    var hadFocus = entry.item.contains(document.activeElement);
    prompts.delete(entry.prompt.request_id);
    entry.item.remove();
    renderRequestsState();
    if (hadFocus) {
      byId("requests-heading").focus();
    }
    if (message) {
      notify(message);
    }
  }

  function renderRequestsState() {
    if (prompts.size === 0) {
      els.requestsState.textContent = connected
        ? "No requests are waiting for you."
        : everConnected
        ? "Not connected: requests reach this page again once it reconnects."
        : "Loading…";
    } else {
      els.requestsState.textContent = "";
    }
  }

  function formatLeft(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    var m = Math.floor(s / 60);
    var rest = s % 60;
    return m ? m + ":" + (rest < 10 ? "0" : "") + rest + " min" : s + " s";
  }

  function tickPrompt(entry) {
    var left = entry.prompt.expires_at - serverNow();
    var cell = entry.item.querySelector(".time-left");
    if (left <= 0) {
      removePrompt(entry, "The request from " + requesterText(entry) + " timed out.");
      return;
    }
    cell.textContent = formatLeft(left);
    cell.classList.toggle("low", left < 30);
  }

  function markStale(stale) {
    prompts.forEach(function (entry) {
      entry.item.classList.toggle("stale", stale);
      entry.item.querySelectorAll("button").forEach(function (b) {
        b.disabled = stale || (b.classList.contains("approve") && !entry.url);
      });
    });
  }

  // --- secrets ----------------------------------------------------------------------

  function api(operation, body) {
    return window.fetch(routeUrl(claims.room, operation).href, {
      method: "POST",
      headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    }).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (data) {
        if (response.status === 401) {
          signOut("Your sign-in is not valid any more. Ask for a new sign-in link.");
        }
        if (!response.ok) {
          var error = new Error((data && data.message) || "the server answered HTTP " + response.status);
          error.status = response.status;
          throw error;
        }
        return data;
      });
    }, function () {
      var error = new Error("the server cannot be reached");
      error.status = 0;
      throw error;
    });
  }

  function loadSecrets() {
    if (!token) {
      return;
    }
    if (!els.secrets.children.length) {
      els.secretsState.textContent = "Loading…";
    }
    api("list_user_secrets", {}).then(function (data) {
      renderSecrets(data.secrets || []);
    }, function (error) {
      els.secretsState.textContent = "Could not load your secrets: " + error.message + ".";
    });
  }

  function secretLabel(info) {
    return info.name || info.id;
  }

  function renderSecrets(list) {
    els.secrets.replaceChildren();
    list.forEach(function (info) {
      var item = els.secretTemplate.content.firstElementChild.cloneNode(true);
      var kind = info.type === "oauth_token" ? "OAuth access" : info.type;
      var to = info.delegated_to ? "delegated to " + info.delegated_to : "not delegated";
      item.querySelector(".secret-name").textContent = secretLabel(info);
      item.querySelector(".secret-meta").textContent = kind + " · " + to;
      item.setAttribute("aria-label", secretLabel(info) + ", " + kind + ", " + to);
      item.querySelector(".delete").addEventListener("click", function (event) {
        askDelete(info, event.currentTarget);
      });
      els.secrets.appendChild(item);
    });
    els.secretsState.textContent = list.length ? "" : "You have no stored secrets.";
  }

  function askDelete(info, opener) {
    pendingDelete = info;
    deleteOpener = opener;
    var to = info.delegated_to
      ? " " + info.delegated_to + " will have to ask you again to use it."
      : "";
    els.confirmText.textContent = "“" + secretLabel(info) + "” will be deleted for good." + to;
    els.confirm.showModal();
    els.confirmNo.focus();
  }

  function closeConfirm() {
    if (els.confirm.open) {
      els.confirm.close();
    }
    if (deleteOpener && deleteOpener.isConnected) {
      deleteOpener.focus();
    }
    pendingDelete = null;
    deleteOpener = null;
  }

  function confirmDelete() {
    var info = pendingDelete;
    if (!info) {
      return;
    }
    els.confirmYes.disabled = true;
    api("delete_user_secret", { id: info.id, delegated_to: info.delegated_to }).then(function () {
      els.confirmYes.disabled = false;
      deleteOpener = null;
      closeConfirm();
      notify("Deleted “" + secretLabel(info) + "”.");
      byId("secrets-heading").setAttribute("tabindex", "-1");
      byId("secrets-heading").focus();
      loadSecrets();
    }, function (error) {
      els.confirmYes.disabled = false;
      closeConfirm();
      notify("Could not delete: " + error.message + ".");
    });
  }

  function notify(text) {
    els.notice.textContent = text;
  }

  // setTimeout takes at most 2**31 - 1 ms (about 24.8 days; a longer delay fires at
  // once): wait in steps until the token's exp.
  function signOutAtExpiry() {
    var ms = claims.exp * 1000 - Date.now();
    if (ms <= 0) {
      signOut("Your sign-in has expired. Ask for a new sign-in link.");
      return;
    }
    expiryTimer = setTimeout(signOutAtExpiry, Math.min(ms, 2147483647));
  }

  // --- start ------------------------------------------------------------------------

  function start() {
    [
      ["who", "who"], ["signOut", "sign-out"], ["connection", "connection"],
      ["connectionText", "connection-text"], ["connectionRetry", "connection-retry"],
      ["signedOut", "signed-out"], ["signedOutReason", "signed-out-reason"],
      ["signedIn", "signed-in"], ["requests", "requests"], ["requestsState", "requests-state"],
      ["secrets", "secrets"], ["secretsState", "secrets-state"], ["notice", "notice"],
      ["confirm", "confirm-delete"], ["confirmText", "confirm-text"],
      ["confirmYes", "confirm-yes"], ["confirmNo", "confirm-no"],
      ["requestTemplate", "request-template"], ["secretTemplate", "secret-template"],
      ["secretRequestTemplate", "secret-request-template"],
    ].forEach(function (pair) { els[pair[0]] = byId(pair[1]); });

    els.signOut.addEventListener("click", function () {
      signOut("You signed out. Open your sign-in link again to come back.");
    });
    els.confirmYes.addEventListener("click", confirmDelete);
    els.confirmNo.addEventListener("click", closeConfirm);
    els.confirm.addEventListener("cancel", function (event) {
      event.preventDefault();
      closeConfirm();
    });

    token = takeToken();
    claims = readClaims(token);
    if (!claims) {
      signOut(token ? "This sign-in link is damaged. Ask for a new one." : null);
      return;
    }
    if (typeof claims.exp === "number") {
      if (claims.exp * 1000 <= Date.now()) {
        signOut("Your sign-in link has expired. Ask for a new one.");
        return;
      }
      signOutAtExpiry();
    }
    els.signedOut.hidden = true;
    els.signedIn.hidden = false;
    els.signOut.hidden = false;
    els.who.textContent = "Signing in as " + (claims.name || claims.sub) + "…";
    setInterval(function () {
      prompts.forEach(tickPrompt);
    }, 1000);
    connect();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
