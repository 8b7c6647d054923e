// The live page: asks /api/live once a second and updates the table in place. Values are
// set as text (never as HTML), so nothing a caller's name holds can run here.
"use strict";
(function () {
  var table = document.getElementById("live");
  var body = table.tBodies[0];
  var keys = Array.prototype.map.call(table.tHead.rows[0].cells, function (th) { return th.dataset.key; })
    .filter(function (k) { return k; });
  var labels = Array.prototype.map.call(table.tHead.rows[0].cells, function (th) { return th.textContent; });
  var admin = table.dataset.admin === "1";
  var csrf = document.querySelector('meta[name="csrf"]').content;
  var error = document.getElementById("live-error");
  var empty = document.getElementById("live-empty");
  var count = document.getElementById("live-count");
  var updated = document.getElementById("live-updated");

  function hangup(callId, button) {
    if (!window.confirm(table.dataset.confirm)) { return; }
    button.disabled = true;
    fetch("/api/calls/" + encodeURIComponent(callId) + "/hangup", {
      method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf }
    }).then(function (r) { return r.json(); }).then(function (reply) {
      button.textContent = reply.ok ? table.dataset.ended : (reply.error || "?");
    }).catch(function () { button.disabled = false; });
  }

  function rowFor(call) {
    var row = document.getElementById("call-" + call.call_id);
    if (row) { return row; }
    row = document.createElement("tr");
    row.id = "call-" + call.call_id;
    row.dataset.callId = call.call_id;
    keys.forEach(function (key, i) {
      var td = document.createElement("td");
      td.dataset.key = key;
      td.dataset.label = labels[i];
      row.appendChild(td);
    });
    if (admin) {
      var td = document.createElement("td");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "hangup";
      button.textContent = table.dataset.hangup;
      button.addEventListener("click", function () { hangup(call.call_id, button); });
      td.appendChild(button);
      row.appendChild(td);
    }
    body.appendChild(row);
    return row;
  }

  function show(reply) {
    error.hidden = !reply.error;
    error.textContent = reply.error || "";
    var seen = {};
    (reply.calls || []).forEach(function (call) {
      var row = rowFor(call);
      seen[row.id] = true;
      Array.prototype.forEach.call(row.cells, function (td) {
        if (td.dataset.key) {
          var value = call[td.dataset.key];
          td.textContent = value === null || value === undefined || value === "" ? "-" : String(value);
        }
      });
    });
    Array.prototype.slice.call(body.rows).forEach(function (row) {
      if (!seen[row.id]) { body.removeChild(row); }  // the call ended: it leaves the list
    });
    var n = (reply.calls || []).length;
    count.textContent = "(" + n + ")";
    empty.hidden = n > 0 || !!reply.error;
    updated.textContent = reply.updated || "";
  }

  function poll() {
    fetch("/api/live", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) { window.location = "/login?next=/live"; return null; }
        return r.json();
      })
      .then(function (reply) { if (reply) { show(reply); } })
      .catch(function () { error.hidden = false; error.textContent = "…"; })
      .then(function () { window.setTimeout(poll, 1000); });
  }
  poll();
})();
