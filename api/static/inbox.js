/* The inbox's live updates (ADR 0022). No inline script: the page's CSP allows scripts from
   this origin only. The page works without this file (reload to see changes); with it, an
   EventSource on the alert stream (GET /api/v1/alerts/stream, authorised by the page's session
   cookie) tells us something changed, and we fetch the rows again as HTML from /inbox/rows with
   the page's own filters, then insert new cards, replace changed ones and drop those that left
   the filter. New alerts are announced in the aria-live region. */
(function () {
  "use strict";
  var list = document.getElementById("alerts");
  var live = document.getElementById("live-status");
  var conn = document.getElementById("live-connection");
  if (!list || !live || !window.EventSource || !window.fetch) { return; }

  var rowsUrl = "/inbox/rows" + window.location.search;
  var pending = null;
  var busy = false;
  var again = false;

  function cards(root) {
    var found = {};
    var nodes = root.querySelectorAll("[data-alert-id]");
    for (var i = 0; i < nodes.length; i++) { found[nodes[i].getAttribute("data-alert-id")] = nodes[i]; }
    return found;
  }

  function say(text) {
    // Re-setting the text makes screen readers announce it again.
    live.textContent = "";
    window.setTimeout(function () { live.textContent = text; }, 50);
  }

  function apply(html) {
    var holder = document.createElement("div");
    holder.innerHTML = html;
    var fresh = holder.querySelector("#alerts");
    if (!fresh) { return; }
    var old = cards(list);
    var incoming = cards(fresh);
    var active = document.activeElement;
    var added = [];
    var previous = null;
    var order = fresh.querySelectorAll("[data-alert-id]");
    for (var i = 0; i < order.length; i++) {
      var id = order[i].getAttribute("data-alert-id");
      var card = order[i];
      var have = old[id];
      if (have) {
        if (have.getAttribute("data-version") !== card.getAttribute("data-version") && !have.contains(active)) {
          card.classList.add("changed");
          have.replaceWith(card);
        } else {
          card = have;  // unchanged, or the clinician is using its form: keep it as it is
        }
      } else {
        card.classList.add("arrived");
        added.push(card.getAttribute("data-summary"));
      }
      // Move only what is out of place: moving a node would take the focus away from it.
      if (previous) {
        if (previous.nextElementSibling !== card) { previous.after(card); }
      } else if (list.firstElementChild !== card) {
        list.prepend(card);
      }
      previous = card;
    }
    for (var gone in old) {
      if (!incoming[gone] && !old[gone].contains(active)) { old[gone].remove(); }
    }
    var empty = document.getElementById("no-alerts");
    if (empty) { empty.hidden = order.length > 0; }
    var count = document.getElementById("alert-count");
    var freshCount = holder.querySelector("#alert-count");
    if (count && freshCount) { count.textContent = freshCount.textContent; }
    if (added.length === 1) { say("New alert: " + added[0]); }
    else if (added.length > 1) { say(added.length + " new alerts. First: " + added[0]); }
  }

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(rowsUrl, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (answer) {
        if (answer.status === 200) { return answer.text(); }
        if (answer.status === 401 || answer.status === 303) { window.location.assign("/"); }
        throw new Error("rows answered " + answer.status);
      })
      .then(apply)
      .catch(function () { /* the next event tries again */ })
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  function soon() {
    if (pending) { return; }
    pending = window.setTimeout(function () { pending = null; refresh(); }, 200);
  }

  var stream = new EventSource(list.getAttribute("data-stream") || "/api/v1/alerts/stream");
  function connected(on) {
    if (!conn) { return; }
    conn.textContent = on ? "Live: new alerts appear here without reloading."
                          : "Live updates paused; reconnecting… (reload the page to see changes)";
    conn.className = on ? "muted" : "warn";
  }
  stream.onopen = function () { connected(true); soon(); };
  stream.onerror = function () { connected(false); };
  stream.onmessage = soon;
  ["alert", "opened", "retriggered", "acknowledged", "snoozed", "unsnoozed", "assigned",
   "escalated", "resolved", "note", "transition"].forEach(function (name) {
    stream.addEventListener(name, soon);
  });
})();
