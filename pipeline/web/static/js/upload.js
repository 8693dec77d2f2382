// 上传月报: send the file with a progress bar per stage (upload, read and validate, apply), then show
// the batch's report in place. Without this script the form posts as usual and the report loads.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  var box = document.getElementById("upload-progress");
  if (!form || !box || !window.XMLHttpRequest || !window.DOMParser || !window.fetch || !window.crypto) return;

  function newId() {
    var bytes = new Uint8Array(12);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function show(stage, done, total, text) {
    var bar = box.querySelector("[data-bar='" + stage + "']");
    var label = box.querySelector("[data-text='" + stage + "']");
    if (total > 0) { bar.max = total; bar.value = Math.min(done, total); } else if (total === 0) { bar.max = 1; bar.value = 1; }
    label.textContent = text;
    bar.setAttribute("data-done", String(done));
    bar.setAttribute("data-total", String(total));
  }

  function report(p) {
    box.setAttribute("data-stage", p.stage || "");
    if (p.total != null) {
      show("validate", p.validated || 0, p.total, "已读取 " + p.total + " 行，已校验 " + (p.validated || 0) + " 行");
    }
    if (p.accepted != null) {
      var applied = p.status === "applied" ? p.accepted : (p.applied || 0);
      var text = p.accepted === 0 ? "没有可入库的行" : "已入库 " + applied + " / " + p.accepted + " 行";
      if (p.status === "received") text = "等待处理进程入库（已接收 " + p.accepted + " 行）";
      show("apply", applied, p.accepted, text);
    }
    if (p.stage === "failed" && p.message) show("validate", 0, 0, p.message);
  }

  function finished(p) {
    return p.stage === "failed" || p.status === "applied" || p.status === "failed" || p.status === "rejected";
  }

  function poll(id) {
    return fetch("/upload/progress?id=" + encodeURIComponent(id), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : { stage: "upload" }; })
      .then(function (p) { report(p); return p; });
  }

  function swapResult(html, url, ok) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var fresh = doc.getElementById("upload-result");
    var here = document.getElementById("upload-result");
    if (!fresh || !here) { document.location.assign(url); return; }
    Array.prototype.forEach.call(doc.querySelectorAll("main > .flash"), function (f) { fresh.insertBefore(f, fresh.firstChild); });
    here.replaceWith(fresh);
    if (ok && url) window.history.replaceState(null, "", url);
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var id = newId();
    form.elements.upload_id.value = id;
    var button = form.querySelector("button[type=submit]");
    button.disabled = true;
    box.hidden = false;
    box.removeAttribute("data-finished");
    ["upload", "validate", "apply"].forEach(function (s) { show(s, 0, -1, ""); });
    var sending = true;
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.upload.onprogress = function (e) {
      if (e.lengthComputable) show("upload", e.loaded, e.total, Math.round(e.loaded / 1024) + " / " + Math.round(e.total / 1024) + " KB");
    };
    xhr.upload.onload = function () { show("upload", 1, 1, "已上传"); };

    function keepPolling(tries) {
      poll(id).then(function (p) {
        if (!sending && (finished(p) || tries <= 0)) {
          box.setAttribute("data-finished", "1");
          button.disabled = false;
          if (!finished(p)) show("apply", 0, -1, "仍在处理，请稍后刷新本页查看");
          return;
        }
        window.setTimeout(function () { keepPolling(sending ? tries : tries - 1); }, 300);
      }).catch(function () { window.setTimeout(function () { keepPolling(tries - 1); }, 1000); });
    }

    xhr.onload = function () {
      sending = false;
      show("upload", 1, 1, "已上传");
      swapResult(xhr.responseText, xhr.responseURL, xhr.status < 400);
    };
    xhr.onerror = function () {
      sending = false;
      show("upload", 0, 0, "上传失败：网络连接中断，请重试");
    };
    xhr.send(new FormData(form));
    keepPolling(600);
  });
})();
