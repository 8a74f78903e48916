/**
 * The demo's MQTT broker: aedes in this process, so the demo needs nothing installed. aedes
 * speaks MQTT 3.1.1 only (its README: "MQTT 5.0: not supported yet"), which is why the demo
 * runs the agent with `mqtt.protocolVersion: 4`.
 */
import { createServer, type Socket } from 'node:net';
import { Aedes } from 'aedes';

export interface EmbeddedBroker {
  /** mqtt://127.0.0.1:PORT */
  url: string;
  port: number;
  close(): Promise<void>;
}

/**
 * Listens on 127.0.0.1, on `port` or (0) one the OS chooses, and reports it. The test harness
 * and the benchmarks use it as their fallback broker too.
 */
export async function startEmbeddedBroker(port = 0, onClientError?: (clientId: string, err: Error) => void): Promise<EmbeddedBroker> {
  const broker = await Aedes.createBroker();
  if (onClientError) broker.on('clientError', (client, err) => onClientError(client.id, err));
  const sockets = new Set<Socket>();
  const server = createServer((sock) => {
    sockets.add(sock);
    sock.once('close', () => sockets.delete(sock));
    broker.handle(sock);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('the embedded broker has no TCP address');
  return {
    url: `mqtt://127.0.0.1:${addr.port}`,
    port: addr.port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await new Promise<void>((resolve) => broker.close(() => resolve()));
    },
  };
}
