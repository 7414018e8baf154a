// Compiled with the generated types (tsc --noEmit --strict): the types say
// what the operations return.
import type {
  RoomEventsSubscription,
  RoomQuery,
  SendGroupMutation,
  TaskUpdatedSubscription,
  UsersQuery,
  UsersQueryVariables,
} from './generated/graphql';

export function names(data: UsersQuery): string[] {
  return data.users.edges.map((edge) => edge.node.username);
}

export function lastText(data: RoomQuery): string | undefined {
  const edges = data.room?.messages.edges ?? [];
  return edges[edges.length - 1]?.node.text;
}

export const firstPage: UsersQueryVariables = { first: 10, filter: { username: 'user_1' } };

export function taskId(data: SendGroupMutation): string {
  return data.sendGroupMessage.id;
}

export function finished(update: TaskUpdatedSubscription): boolean {
  return update.taskUpdated.state === 'SUCCESS' || update.taskUpdated.state === 'FAILURE';
}

// The room event union narrows on __typename.
export function describe(event: RoomEventsSubscription['roomEvents']): string {
  switch (event.__typename) {
    case 'MessageStoredEvent':
      return `new: ${event.message.text}`;
    case 'MessageEditedEvent':
      return `edited: ${event.message.text}`;
    case 'MessageDeletedEvent':
      return `deleted: ${event.message.id}`;
    case 'ReactionChangedEvent':
      return `${event.user?.username ?? 'someone'} ${event.added ? 'added' : 'removed'} ${event.emoji}`;
    case 'MemberJoinedEvent':
    case 'MemberLeftEvent':
      return `${event.__typename}: ${event.user?.username ?? ''}`;
    case 'TypingEvent':
      return `${event.user?.username ?? ''} ${event.typing ? 'is typing' : 'stopped'}`;
    case 'PresenceChangedEvent':
      return `${event.user?.username ?? ''} ${event.presence.online ? 'online' : 'offline'}`;
  }
}
