// Stratum console: uploads in parts with progress, and confirmations. No dependencies.
"use strict";

function send(method, url, csrf, body, onProgress) {
  return new Promise(function (resolve, reject) {
    var xhr = new XMLHttpRequest();
    xhr.open(method, url);
    xhr.setRequestHeader("X-CSRF-Token", csrf);
    xhr.setRequestHeader("X-Requested-With", "stratum-console");
    if (onProgress) {
      xhr.upload.onprogress = function (e) { onProgress(e.loaded); };
    }
    xhr.onload = function () {
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve(xhr.responseText ? JSON.parse(xhr.responseText) : {});
      } else {
        reject(new Error(xhr.status + " " + (xhr.responseText || xhr.statusText).slice(0, 300)));
      }
    };
    xhr.onerror = function () { reject(new Error("network error")); };
    xhr.send(body);
  });
}

async function uploadFile(form, file, done, total, show) {
  var base = "/b/" + encodeURIComponent(form.dataset.bucket) + "/upload?key=" +
    encodeURIComponent(form.dataset.prefix + file.name) +
    "&type=" + encodeURIComponent(file.type || "application/octet-stream");
  var csrf = form.dataset.csrf;
  var partSize = parseInt(form.dataset.partSize, 10);
  if (file.size <= partSize) {
    await send("PUT", base, csrf, file, function (n) { show(done + n, total); });
    return;
  }
  var started = await send("POST", base + "&uploads=1", csrf, null);
  var id = "&upload_id=" + encodeURIComponent(started.upload_id);
  var etags = [];
  try {
    for (var offset = 0, part = 1; offset < file.size; offset += partSize, part++) {
      var piece = file.slice(offset, Math.min(offset + partSize, file.size));
      var sent = done + offset;
      var answer = await send("PUT", base + id + "&part=" + part, csrf, piece,
        function (n) { show(sent + n, total); });
      etags.push(answer.etag);
    }
    await send("POST", base + id, csrf, JSON.stringify({ etags: etags }));
  } catch (err) {
    send("DELETE", base + id, csrf, null).catch(function () {});
    throw err;
  }
}

function setupUpload(form) {
  var input = form.querySelector("input[type=file]");
  var bar = form.querySelector("progress");
  var status = form.querySelector("output");
  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    var files = Array.prototype.slice.call(input.files);
    var total = files.reduce(function (sum, f) { return sum + f.size; }, 0) || 1;
    var done = 0;
    bar.hidden = false;
    var show = function (n, all) {
      bar.value = n / all;
      status.textContent = Math.floor((100 * n) / all) + " %";
    };
    try {
      for (var i = 0; i < files.length; i++) {
        status.textContent = "uploading " + files[i].name;
        await uploadFile(form, files[i], done, total, show);
        done += files[i].size;
      }
      status.textContent = "done";
      window.location.reload();
    } catch (err) {
      status.textContent = "failed: " + err.message;
    }
  });
}

document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("upload");
  if (form) { setupUpload(form); }
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (event) {
      if (!window.confirm(f.dataset.confirm)) { event.preventDefault(); }
    });
  });
  document.querySelectorAll("#share-link").forEach(function (input) {
    input.addEventListener("focus", function () { input.select(); });
  });
});
