/**
 * The bridge's topics under `{prefix}/{gatewayId}/` (CONTRACT.md section 3), used by its MQTT
 * link (mqtt-link.ts, which re-exports them).
 */
export interface BridgeTopics {
  /** `~/plc/status` */
  status: string;
  data(device: string, group: string): string;
  /** `~/plc/+/set` */
  setFilter: string;
  deviceOfSet(topic: string): string | undefined;
  /** `~/res/{id}` */
  result(id: string): string;
}

export function bridgeTopics(prefix: string, gatewayId: string): BridgeTopics {
  const plc = `${prefix}/${gatewayId}/plc/`;
  return {
    status: `${plc}status`,
    data: (device, group) => `${plc}${device}/${group}`,
    setFilter: `${plc}+/set`,
    deviceOfSet: (topic) => {
      if (!topic.startsWith(plc) || !topic.endsWith('/set')) return undefined;
      const device = topic.slice(plc.length, -'/set'.length);
      return device.length > 0 && !device.includes('/') ? device : undefined;
    },
    result: (id) => `${prefix}/${gatewayId}/res/${id}`,
  };
}
