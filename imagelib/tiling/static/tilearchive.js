/* imagelib tile archive reader (BSD-3-Clause, part of imagelib; no dependencies).
 *
 * A pyramid exported with `imagelib tile --archive` is one stored (uncompressed) zip: each tile is one
 * contiguous byte range and the central directory at the end is the index. Over HTTP the reader fetches
 * the index once, then each tile with one `Range: bytes=a-b` request; a server that ignores Range
 * answers 200 with the whole file, which is then kept in memory and sliced (works, downloads it all).
 * From file:// browsers refuse to read neighbouring files, so the page asks the user to pick the
 * archive (a File is sliced locally, no upload) or to serve the folder over HTTP.
 *
 *   TileArchive.start("name.zip", function (archive) { ...archive.dziSource(image) / archive.leafletLayer(...) });
 */
(function (global) {
  "use strict";

  var TAIL = 22 + 20 + 56 + 65535; // EOCD + Zip64 locator + Zip64 record + the longest zip comment
  var MAX32 = 0xffffffff;

  function TileArchive(source) {
    this.source = source; // a URL (HTTP Range) or a Blob/File (local slicing)
    this.whole = null; // the entire archive, when the server ignored Range
    this.entries = null; // name -> [local header offset, size]
  }

  /** Bytes [start, end) of the archive; start < 0 reads the last -start bytes. */
  TileArchive.prototype.read = function (start, end) {
    var self = this;
    if (self.whole) {
      var n = self.whole.byteLength;
      return Promise.resolve(start < 0 ? self.whole.slice(Math.max(n + start, 0)) : self.whole.slice(start, end));
    }
    if (typeof self.source !== "string") {
      var blob = self.source;
      var part = start < 0 ? blob.slice(Math.max(blob.size + start, 0)) : blob.slice(start, end);
      return part.arrayBuffer();
    }
    var range = start < 0 ? "bytes=" + start : "bytes=" + start + "-" + (end - 1);
    return fetch(self.source, {headers: {Range: range}}).then(function (response) {
      if (response.status === 206) {
        return response.arrayBuffer();
      }
      if (response.status === 200) { // no Range support: keep the whole file and slice it from now on
        return response.arrayBuffer().then(function (all) {
          self.whole = all;
          return self.read(start, end);
        });
      }
      throw new Error(self.source + ": HTTP " + response.status);
    });
  };

  /** Read the central directory; resolves to the archive. */
  TileArchive.prototype.open = function () {
    var self = this;
    var tailStart = null;
    return self.read(-TAIL).then(function (tail) {
      var view = new DataView(tail);
      var eocd = -1;
      for (var i = tail.byteLength - 22; i >= 0; i--) {
        if (view.getUint32(i, true) === 0x06054b50) { eocd = i; break; }
      }
      if (eocd < 0) {
        throw new Error("not a zip archive (no end of central directory)");
      }
      var count = view.getUint16(eocd + 10, true);
      var size = view.getUint32(eocd + 12, true);
      var offset = view.getUint32(eocd + 16, true);
      var at = eocd; // where the central directory ends, relative to the tail buffer
      if (count === 0xffff || size === MAX32 || offset === MAX32) { // Zip64 end records
        var locator = eocd - 20;
        if (locator < 0 || view.getUint32(locator, true) !== 0x07064b50) {
          throw new Error("Zip64 locator missing");
        }
        at = locator - 56;
        if (at < 0 || view.getUint32(at, true) !== 0x06064b50) {
          throw new Error("Zip64 end record missing");
        }
        count = Number(view.getBigUint64(at + 32, true));
        size = Number(view.getBigUint64(at + 40, true));
        offset = Number(view.getBigUint64(at + 48, true));
      }
      tailStart = offset + size - at; // the directory ends where the end records begin
      if (offset >= tailStart) {
        return parse(tail.slice(offset - tailStart, offset - tailStart + size), count);
      }
      return self.read(offset, offset + size).then(function (dir) { return parse(dir, count); });
    }).then(function (entries) {
      self.entries = entries;
      return self;
    });
  };

  function parse(buffer, count) {
    var view = new DataView(buffer);
    var names = new TextDecoder("utf-8");
    var entries = new Map();
    var p = 0;
    for (var k = 0; k < count; k++) {
      if (view.getUint32(p, true) !== 0x02014b50) {
        throw new Error("bad central directory record " + k);
      }
      var size = view.getUint32(p + 20, true);
      var nameLength = view.getUint16(p + 28, true);
      var extraLength = view.getUint16(p + 30, true);
      var commentLength = view.getUint16(p + 32, true);
      var offset = view.getUint32(p + 42, true);
      var name = names.decode(new Uint8Array(buffer, p + 46, nameLength));
      var q = p + 46 + nameLength;
      var end = q + extraLength;
      while (q + 4 <= end) { // the Zip64 extra holds the fields stored as 0xFFFFFFFF, in this order
        var id = view.getUint16(q, true);
        var length = view.getUint16(q + 2, true);
        if (id === 0x0001) {
          var r = q + 4;
          if (view.getUint32(p + 24, true) === MAX32) { r += 8; } // uncompressed size (= size: stored)
          if (size === MAX32) { size = Number(view.getBigUint64(r, true)); r += 8; }
          if (offset === MAX32) { offset = Number(view.getBigUint64(r, true)); }
        }
        q += 4 + length;
      }
      if (view.getUint16(p + 10, true) !== 0) {
        throw new Error(name + ": compressed entries are not supported (write the archive with imagelib)");
      }
      entries.set(name, [offset, size]);
      p = end + commentLength;
    }
    return entries;
  }

  /** The bytes of one entry as a Blob (null when the archive has no such entry). */
  TileArchive.prototype.blob = function (name, type) {
    var entry = this.entries.get(name);
    if (!entry) {
      return Promise.resolve(null);
    }
    var offset = entry[0];
    var size = entry[1];
    // one request: local header (30 bytes + name + extra, <= 1 KiB here) and data together
    var guess = 30 + 4 * name.length + 256;
    var self = this;
    return self.read(offset, offset + guess + size).then(function (bytes) {
      var view = new DataView(bytes);
      if (view.getUint32(0, true) !== 0x04034b50) {
        throw new Error(name + ": bad local header at " + offset);
      }
      var start = 30 + view.getUint16(26, true) + view.getUint16(28, true);
      if (start + size <= bytes.byteLength) {
        return bytes.slice(start, start + size);
      }
      return self.read(offset + start, offset + start + size);
    }).then(function (data) {
      return new Blob([data], {type: type || mediaType(name)});
    });
  };

  function mediaType(name) {
    var suffix = name.slice(name.lastIndexOf(".") + 1).toLowerCase();
    return {jpg: "image/jpeg", jpeg: "image/jpeg", png: "image/png", webp: "image/webp"}[suffix] ||
      "application/octet-stream";
  }

  /** An OpenSeadragon DZI tile source (inline descriptor `image`) whose tiles come from the archive. */
  TileArchive.prototype.dziSource = function (image) {
    var archive = this;
    var source = new global.OpenSeadragon.DziTileSource({
      width: Number(image.Size.Width),
      height: Number(image.Size.Height),
      tileSize: Number(image.TileSize),
      tileOverlap: Number(image.Overlap),
      tilesUrl: image.Url,
      fileFormat: image.Format
    });
    source.downloadTileStart = function (job) {
      archive.blob(job.src).then(function (blob) {
        if (blob) {
          job.finish(blob, null, "rasterBlob");
        } else {
          job.fail("tile not in archive: " + job.src, null);
        }
      }, function (error) {
        job.fail(String(error), null);
      });
    };
    source.downloadTileAbort = function () {}; // a late result lands on a finished job and is ignored
    return source;
  };

  /** A Leaflet tile layer (`template` such as "{z}/{x}/{y}.png") whose tiles come from the archive. */
  TileArchive.prototype.leafletLayer = function (template, options) {
    var archive = this;
    var Layer = global.L.TileLayer.extend({
      createTile: function (coords, done) {
        var img = document.createElement("img");
        img.alt = "";
        var name = this.getTileUrl(coords);
        archive.blob(name).then(function (blob) {
          if (!blob) {
            done(new Error("tile not in archive: " + name), img);
            return;
          }
          var url = URL.createObjectURL(blob);
          img.onload = function () { URL.revokeObjectURL(url); done(null, img); };
          img.onerror = function () { URL.revokeObjectURL(url); done(new Error("bad tile " + name), img); };
          img.src = url;
        }, function (error) { done(error, img); });
        return img;
      }
    });
    return new Layer(template, options);
  };

  function notice(html) {
    var box = document.createElement("div");
    box.id = "tilearchive-notice";
    box.style.cssText = "position:fixed;top:20%;left:10%;right:10%;z-index:1000;padding:1em 1.5em;" +
      "background:#fff;color:#222;font:15px/1.5 sans-serif;border-radius:6px";
    box.innerHTML = html;
    document.body.appendChild(box);
    return box;
  }

  /** Open `url` (or, from file://, the archive the user picks) and call `show(archive)`. */
  TileArchive.start = function (url, show) {
    function fail(error) {
      notice("Could not read the tile archive <code>" + url + "</code>: " + String(error));
    }
    if (global.location.protocol !== "file:") {
      new TileArchive(url).open().then(show, fail);
      return;
    }
    var box = notice(
      "<p>This viewer reads its tiles from <code>" + url + "</code> with HTTP Range requests, which " +
      "browsers refuse for pages opened from <code>file://</code>.</p><p>Serve this folder over HTTP " +
      "(any static host, a bucket, or <code>python -m http.server</code>), or choose the archive here " +
      "(it is read locally, nothing is uploaded): <input type=\"file\" accept=\".zip\"></p>");
    box.querySelector("input").addEventListener("change", function (event) {
      var file = event.target.files[0];
      if (!file) {
        return;
      }
      new TileArchive(file).open().then(function (archive) {
        box.remove();
        show(archive);
      }, fail);
    });
  };

  global.TileArchive = TileArchive;
})(window);
