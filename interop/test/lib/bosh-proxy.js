// A loopback HTTP proxy in front of weft's BOSH endpoint that can lose things the way networks
// do: the response to a chosen request (weft answered; the client never sees it), or
// everything from some point on (a client whose network went away). It records every rid it
// forwards, so a test can see a client retransmit.
import http from 'node:http';

export async function startBoshProxy(target) {
  const proxy = {
    rids: [],
    // (requestBody, responseBody) => true to drop that response (once).
    dropResponse: null,
    dropped: [],
    blackhole: false,
    held: new Set(),
  };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      if (proxy.blackhole) {
        proxy.held.add(res);
        return;
      }
      const rid = body.match(/rid=["'](\d+)["']/)?.[1];
      if (rid) proxy.rids.push(rid);
      const up = http.request(target, { agent: false, method: req.method, headers: { ...req.headers, host: new URL(target).host } }, (upRes) => {
        const out = [];
        upRes.on('data', (c) => out.push(c));
        upRes.on('end', () => {
          const answer = Buffer.concat(out);
          if (proxy.dropResponse && proxy.dropResponse(body, answer.toString('utf8'))) {
            proxy.dropResponse = null;
            proxy.dropped.push({ rid, answer: answer.toString('utf8') });
            res.socket.destroy();
            return;
          }
          res.writeHead(upRes.statusCode, upRes.headers);
          res.end(answer);
        });
      });
      up.on('error', () => res.socket?.destroy());
      up.end(body);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.url = `http://127.0.0.1:${server.address().port}/http-bind`;
  proxy.close = () => new Promise((resolve) => {
    for (const res of proxy.held) res.socket?.destroy();
    server.close(resolve);
    server.closeAllConnections();
  });
  return proxy;
}
