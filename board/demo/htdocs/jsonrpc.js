// A small JSON-RPC 2.0 client over a wsgate WebSocket, shared by webauth.html and
// websysinfo.html. No build step, no library.
//
//   var rpc = new JsonRpc("auth", onState);   // endpoint name; onState(text) on open/close
//   rpc.call("auth", {user: "u", passwd: "p"}).then(function (result) {...}, function (error) {...});
"use strict";

function wsUrl(name) {
  // The seed's URL code (ws:// on http, wss:// on https), with its two slips fixed: `uri`
  // starts empty (it was undefined), and location.host keeps the port (hostname drops it).
  var uri = "";
  if (location.protocol === "http:")
    uri += "ws://";
  else if (location.protocol === "https:")
    uri += "wss://";
  uri += location.host;
  uri += "/" + name;
  return uri;
}

function JsonRpc(name, onState) {
  var self = this;
  this.nextId = 1;
  this.pending = {};
  this.queue = [];
  this.websocket = new WebSocket(wsUrl(name));
  this.websocket.onopen = function () {
    if (onState) onState("connected to /" + name);
    self.queue.forEach(function (text) { self.websocket.send(text); });
    self.queue = [];
  };
  this.websocket.onclose = function (e) {
    if (onState) onState("closed (" + e.code + ")");
    Object.keys(self.pending).forEach(function (id) {
      self.pending[id].reject({ code: -32000, message: "connection closed" });
    });
    self.pending = {};
  };
  this.websocket.onmessage = function (e) {
    var answer;
    try { answer = JSON.parse(e.data); } catch (err) { return; }
    (Array.isArray(answer) ? answer : [answer]).forEach(function (r) {
      var p = self.pending[r.id];
      if (!p) return;
      delete self.pending[r.id];
      if (r.error) p.reject(r.error); else p.resolve(r.result);
    });
  };
}

JsonRpc.prototype.call = function (method, params) {
  var self = this;
  var id = this.nextId++;
  var text = JSON.stringify({ jsonrpc: "2.0", method: method, params: params, id: id });
  return new Promise(function (resolve, reject) {
    self.pending[id] = { resolve: resolve, reject: reject };
    if (self.websocket.readyState === WebSocket.OPEN) self.websocket.send(text);
    else self.queue.push(text);
  });
};
