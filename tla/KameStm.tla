------------------------------- MODULE KameStm -------------------------------
(***************************************************************************)
(* The kame-stm protocol (src/protocol/, src/transaction.rs), one TLA+    *)
(* action per Rust step function, with the same names (CamelCase here,    *)
(* snake_case there; docs/tla-mapping.md, enforced by tests/tla_mapping.rs).*)
(*                                                                         *)
(* Trees (constants Levels, HardLink):                                      *)
(*   Levels = 2 :  P -> {C1, C2}                                           *)
(*   Levels = 3 :  G -> P -> {C1, C2}                                      *)
(* and, with Levels = 3, trees with a hard link (C1 has two parents):      *)
(*   HardLink = "diamond"      :  G -> {P, Q}, P -> C1, Q -> C1            *)
(*   HardLink = "shortcut"     :  G -> {P, C1}, P -> C1                    *)
(*   HardLink = "shortcut_rev" :  G -> {C1, P}, P -> C1 (C1 listed first)  *)
(* (with Detached = {"C1"} the edge G -> C1 of a shortcut is inserted and  *)
(* released by the DynThreads thread: a dynamic hard link).               *)
(* The same actions serve both trees: bundling a child whose packet is     *)
(* missing pushes a nested bundle frame (same bundle serial), unbundling   *)
(* walks up one ancestor per step, exactly as the Rust explicit frame      *)
(* stack does (src/protocol/mod.rs).                                       *)
(*                                                                         *)
(* Workload: every thread runs MaxCommits iterations.  In one iteration a  *)
(* thread in RootThreads runs a transaction at the root incrementing every *)
(* leaf it lists, a thread in MidThreads (3 levels only) one at P (at Q   *)
(* in the diamond), a thread in LeafThreads one transaction at each leaf   *)
(* incrementing it, and the thread in DynThreads (2 levels, or the         *)
(* shortcut) the transactions DynJobs names, at the root: "ins" inserts  *)
(* C1 (Online: insert_online, else insert), "reins" releases C1 and        *)
(* insert_onlines it again, "rel" releases it.  A thread in CondThreads    *)
(* runs "cond" at the root: its body asks to retry (BodyRetry) while C1 is *)
(* below 1 in its snapshot; one in StopThreads runs "stop": its body stops *)
(* (no commit) while C1 is below 1.  Threads in Endless never finish.      *)
(* A transaction = snapshot (SnapRead, SnapCheck, bundle / unbundle        *)
(* frames), the closure (local, except the dynamic steps InsertReadChild   *)
(* ... ReleaseCASChild, TxValidate), commit (CommitStart ... CommitDone); *)
(* a conflict retries with a fresh snapshot (transaction.rs drive()).     *)
(* Static configs have DynThreads = {} and Detached = {}.                  *)
(*                                                                         *)
(* Granularity: every action performs at most one load or one CAS of one  *)
(* linkage, as the Rust step does.  Rust steps that touch no shared memory *)
(* at all (handing a finished frame's outcome to the frame below, Phase 3  *)
(* noticing it has nothing left to CAS, SnapRead on a retry) are merged    *)
(* into the neighbouring action; a purely local step commutes with every   *)
(* step of every other thread, so this removes no interleaving.            *)
(*                                                                         *)
(* Identity: Rust compares wrappers and packets by pointer.  Here every    *)
(* wrapper and packet is a value that carries the Lamport serial of the    *)
(* step that created it (packets: field id), which makes values created by *)
(* different steps distinct; see tla/README.md "Identity".                 *)
(*                                                                         *)
(* Priority (issue 3): every CAS action is gated by CanProceed(t, n) for   *)
(* the node it CASes, a failed CAS applies TagAfterFail, a successful one  *)
(* TagAfterSuccess (no-op), a commit success ClearMyTags; a thread that    *)
(* waits on a foreign tag may PreemptTag it when it is older.  Privilege = *)
(* FALSE switches all of that off, as the Rust `no-privilege` feature does.*)
(* A conflict found at commit time (CommitRead, UnbundleWalk "changed")   *)
(* tags too (TagOnConflict), a dynamic child CAS is preceded by TxValidate *)
(* (Validate), and a body that asks to retry runs BodyRetry, which clears  *)
(* the transaction's tags (RetryClearsTags): tla/FINDINGS.md #4 - #6.      *)
(* A transaction's first SoftLosses failed commit CASes are soft (Soft):   *)
(* no tag.  A one-off loss to a peer that just committed costs no wait; a  *)
(* transaction that keeps losing tags as before.                          *)
(***************************************************************************)
EXTENDS Naturals, Sequences, FiniteSets, TLC

CONSTANTS
    Threads,      \* thread ids: 1..N (naturals: tags and serials compare them)
    RootThreads,  \* threads running a transaction at the root each iteration
    MidThreads,   \* threads running a transaction at P (Levels = 3 only)
    LeafThreads,  \* threads running one transaction per leaf each iteration
    DynThreads,   \* the thread inserting and releasing C1 (at most one)
    Detached,     \* leaves not yet children of P at the start
    Online,       \* TRUE: insert_online (child in limbo), FALSE: insert
    MaxCommits,   \* iterations per thread
    Levels,       \* 2 or 3
    HardLink,     \* "none", or the hard-link tree (Levels = 3): "diamond",
                  \* "shortcut", "shortcut_rev"
    Privilege,    \* FALSE = the `no-privilege` feature
    RestampBundled, \* TRUE: phase 3 also re-stamps children found already
                  \* bundled (see tla/FINDINGS.md #1); FALSE: it skips them
    SafeAdopt,    \* TRUE: after its own phase-1 unbundle CASed the bundling
                  \* node, a bundle follows the new wrapper only if the
                  \* unbundle replaced the very wrapper the bundle holds
                  \* (else it keeps its own, and phase 2 fails); FALSE: it
                  \* always follows (FINDINGS #2)
    LimboReady,   \* TRUE: insert_read_child takes a child in limbo under the
                  \* inserting parent as ready (its carried packet); FALSE: it
                  \* unbundles it (Promote), which CASes P (FINDINGS #3)
    Validate,     \* TRUE: TxValidate (the transaction root is still the
                  \* snapshot's wrapper) before every child CAS of a dynamic
                  \* operation, and a doomed attempt writes nothing more (it
                  \* tags the root and retries); FALSE: no TxValidate, and a
                  \* doomed release does not stop the body (FINDINGS #4)
    LocalMoves,   \* TRUE: "reins" re-inserts the child it released in the
                  \* same attempt locally, with the packet it released it
                  \* with (Transaction::take_moved: no read, no CAS; the
                  \* code since issue 9); FALSE: it reads the child again
                  \* and CASes it into a new limbo (InsertReadChild ...
                  \* InsertCASChild), as the code of FINDINGS #4 did
    StopDoomed,   \* (Validate = FALSE only) TRUE: a doomed release still
                  \* stops the body (as this spec had it); FALSE: the body
                  \* goes on (as the code had it)
    TagOnConflict, \* TRUE: a conflict found at commit time (CommitRead's
                  \* "another packet", UnbundleWalk's "changed" and "found
                  \* nothing") applies TagAfterFail; FALSE: only failed CASes
                  \* tag (FINDINGS #5)
    RetryClearsTags, \* TRUE: BodyRetry clears the transaction's tags; FALSE:
                  \* they are kept across the retry (FINDINGS #6)
    RetryRestamps, \* TRUE: BodyRetry also gives the transaction a fresh stamp
                  \* (Negotiator::new); FALSE: it keeps its stamp (FINDINGS #6:
                  \* clearing alone still livelocks)
    DynJobs,      \* the transactions of the DynThreads thread, a subset of
                  \* {"ins", "reins", "rel"} ("reins": release C1 and
                  \* insert_online it again in one transaction)
    CondThreads,  \* threads running "cond": a transaction at the root whose
                  \* body asks to retry (iterate_commit_if returning false)
                  \* while C1's payload in its snapshot is below 1, and else
                  \* increments every leaf
    Endless,      \* threads that never finish: their budget never decreases,
                  \* and their transactions rewrite the leaves they would
                  \* increment with the same value (new packets, so readers see
                  \* a change, but payloads and credit stay bounded)
    Null          \* model value

\* Priority classes (issue 11; see "Priority tags"): a thread's class, 0
\* Realtime, 1 Normal, 2 Interactive, 3 Background. ThreadClass and
\* ReaderThreads are definitions, not CONSTANTS, so that the configs written
\* before them stay as they are (everyone Normal, no readers); a config
\* overrides them: `ThreadClass <- MixedClasses`, `ReaderThreads = {3}`.
ThreadClass == [t \in Threads |-> 1]
\* Thread 1 Realtime, thread 2 Normal, the others Interactive.
MixedClasses == [t \in Threads |-> CASE t = 1 -> 0 [] t = 2 -> 1 [] OTHER -> 2]
\* Thread 1 Realtime, the others Interactive (the stand-alone reader's default).
ReaderClasses == [t \in Threads |-> IF t = 1 THEN 0 ELSE 2]
\* Threads that only take a stand-alone snapshot of the root each
\* iteration (Node::snapshot; job "read"): its end drops the negotiator,
\* which is CommitDone's "ok" branch (ClearMyTags, next iteration).
ReaderThreads == {}
\* Threads running "stop" each iteration: a transaction at the root whose
\* body stops (iterate_commit_while returning false: drive.rs Flow::Stop)
\* while C1 is below 1 in its snapshot, and else increments every leaf. Its
\* stop drops the negotiator without a commit: CommitDone's "ok" branch,
\* as a reader's end. A definition, as ReaderThreads: `StopThreads = {1}`.
StopThreads == {}
\* The seal (Transaction::seal_inserts): after the commit of a plain insert
\* of an outside node under the root, the inserting thread bundles the
\* child in at once, from the wrapper its commit installed, collecting
\* only the void slots (SealStart, SealPhase1, BundlePhase2-4, SealEnd).
\* A definition, as ReaderThreads; `SealInserts = FALSE` is the code
\* before it. `SealFromOwnCommit = FALSE` lets a seal start from any
\* priority wrapper of the root (a bug kept as a regression: the
\* unbundle of finding #1 then survives the seal).
SealInserts == TRUE
SealFromOwnCommit == TRUE
\* Soft losses (negotiation.rs Negotiator::soft): the first SoftLosses
\* failed commit CASes of a transaction (CommitParent, CommitTryCAS) write
\* no tag, each using up one, and the conflict CommitRead then finds is
\* not tagged either; every other failure tags as before, and so do these
\* once they are used up.  A Realtime transaction and a stand-alone
\* snapshot are never soft.  The code's value is SOFT_LOSSES = 1.  A
\* definition, as ReaderThreads; `SoftLosses <- 0` is the code before it.
SoftLosses == 1

ASSUME Levels \in {2, 3}
ASSUME HardLink \in {"none", "diamond", "shortcut", "shortcut_rev"}
ASSUME HardLink # "none" => Levels = 3
ASSUME Threads = 1..Cardinality(Threads) /\ Threads # {}
ASSUME RootThreads \cup MidThreads \cup LeafThreads \cup DynThreads \cup CondThreads \cup ReaderThreads
       \cup StopThreads = Threads
ASSUME ThreadClass \in [Threads -> 0..3]
ASSUME Levels = 2 => MidThreads = {}
ASSUME Cardinality(DynThreads) <= 1 /\ Online \in BOOLEAN
ASSUME Detached \subseteq {"C1", "C2"}
ASSUME Detached # {} => Levels = 2 \/ (HardLink = "shortcut" /\ Detached = {"C1"})
ASSUME DynThreads # {} => "C1" \in Detached
ASSUME MaxCommits \in Nat \ {0}
ASSUME Privilege \in BOOLEAN
ASSUME RestampBundled \in BOOLEAN
ASSUME SafeAdopt \in BOOLEAN
ASSUME LimboReady \in BOOLEAN
ASSUME Validate \in BOOLEAN /\ TagOnConflict \in BOOLEAN /\ RetryClearsTags \in BOOLEAN
ASSUME StopDoomed \in BOOLEAN /\ (Validate => StopDoomed)
\* A doomed body that goes on re-inserts the child locally: no shared step.
ASSUME LocalMoves \in BOOLEAN /\ (LocalMoves => StopDoomed)
ASSUME RetryRestamps \in BOOLEAN /\ (RetryRestamps => RetryClearsTags)
ASSUME DynJobs \subseteq {"ins", "reins", "rel"}
ASSUME "reins" \in DynJobs => "ins" \in DynJobs /\ Online /\ Levels = 2
ASSUME DynThreads # {} /\ MaxCommits > 1 => "rel" \in DynJobs
ASSUME CondThreads \subseteq Threads /\ (CondThreads # {} => Levels = 2 /\ DynThreads = {} /\ "C1" \notin Detached)
ASSUME StopThreads \subseteq Threads /\ (StopThreads # {} => Levels = 2 /\ DynThreads = {} /\ "C1" \notin Detached)
ASSUME Endless \subseteq RootThreads \cup MidThreads \cup LeafThreads \cup DynThreads

VARIABLES
    linkage,      \* [Nodes -> Wrapper]: the one atomic word of each node
    serial,       \* [Threads -> Serial]: the thread-local Lamport serial (serial.rs)
    pc,           \* [Threads -> step name]: the next step of the top frame
    target,       \* [Threads -> Job \cup {Null}]: the current transaction (a node, "ins", "rel")
    local,        \* [Threads -> Local]: the operation's frames and results
    budget,       \* [Threads -> 0..MaxCommits]: iterations left
    queue,        \* [Threads -> SUBSET Nodes]: transactions left in this iteration
    priorityTag,  \* [Nodes -> Null \cup Stamp]: Linkage::tag
    stamp,        \* [Threads -> Null \cup Stamp]: the running transaction's
                  \* stamp (Negotiator::stamp), fixed at its start
    credit,       \* [Leaves -> Nat]: ghost, increments published so far
    dropper       \* Linkage::drop of a node of DropNodes: [node, st ("live",
                  \* "dropping", "gone"), i (next child in its packet's
                  \* list), ser (the dropping thread's serial)]

vars == <<linkage, serial, pc, target, local, budget, queue, priorityTag, stamp, credit, dropper>>

-----------------------------------------------------------------------------
(* The tree *)

HL       == HardLink # "none"
Leaves   == IF HL THEN {"C1"} ELSE {"C1", "C2"}
\* The leaves a leaf thread writes, one transaction each. A definition
\* (as ThreadClass) so that the configs stay as they are;
\* `LeafWrites <- OneLeaf` gives the leaf thread a single commit, so that a
\* three-thread mix fits a run of TLC.
LeafWrites == Leaves
OneLeaf == {"C1"}
RootNode == IF Levels = 2 THEN "P" ELSE "G"
Inner    == CASE Levels = 2            -> {"P"}
              [] HardLink = "diamond"  -> {"G", "P", "Q"}
              [] OTHER                 -> {"G", "P"}
Nodes    == Inner \cup Leaves

\* The edges of the tree (with the detachable ones), in list order: the
\* Rust Children::nodes order.
AllKids(n) ==
    CASE n = "P" /\ ~HL                -> <<"C1", "C2">>
      [] n \in {"P", "Q"}              -> <<"C1">>
      [] n = "G" /\ ~HL                -> <<"P">>
      [] n = "G" /\ HardLink = "diamond" -> <<"P", "Q">>
      [] n = "G" /\ HardLink = "shortcut" -> <<"P", "C1">>
      [] n = "G"                        -> <<"C1", "P">>
      [] OTHER                          -> <<>>
\* Children at the start.  Detached leaves are not children of the root
\* (2 levels: of P; a shortcut: the edge G -> C1 is absent, P -> C1 stays).
Kids(n) == IF n = RootNode THEN SelectSeq(AllKids(n), LAMBDA c : c \notin Detached)
           ELSE AllKids(n)
KidSet(n) == {Kids(n)[i] : i \in DOMAIN Kids(n)}
DynChild == "C1"

\* The children a packet lists, in list order (inserts append; with one
\* dynamic child this is the fixed order of AllKids).
Order == IF HardLink = "shortcut_rev" THEN <<"C1", "P">> ELSE <<"P", "Q", "C1", "C2">>
ListOf(p) == SelectSeq(Order, LAMBDA c : c \in DOMAIN p.sub)
IndexIn(p, c) == CHOOSE i \in DOMAIN ListOf(p) : ListOf(p)[i] = c
\* The nodes that may list n (one, or two for the hard-linked C1).
Parents(n) == {m \in Inner : \E i \in DOMAIN AllKids(m) : AllKids(m)[i] = n}
\* The node MidThreads run a transaction at: P; in the diamond Q, the parent
\* the root's bundle leaves void (G lists P first), so a snapshot of Q must
\* take C1 from P, and the next bundle of G takes it back.
MidNodes == IF HardLink = "diamond" THEN {"Q"} ELSE {"P"}

\* Leaves whose payload a transaction at n increments.
Incs(n) == IF n \in Leaves THEN {n} ELSE Leaves

-----------------------------------------------------------------------------
(* Lamport serials: counter * SerialBase + tid (serial.rs: counter << 16 | tid). *)

SerialBase == Cardinality(Threads) + 1
Cnt(s) == s \div SerialBase
Max(a, b) == IF a > b THEN a ELSE b

\* serial::gen(last) run by a thread whose thread-local serial is tls.
Gen(tls, last) == (Max(Cnt(last), Cnt(tls)) + 1) * SerialBase + (tls % SerialBase)

\* Several gen() calls in a row (UnbundleWalk prepares one copy per ancestor).
RECURSIVE GenMany(_, _)
GenMany(tls, lasts) ==
    IF lasts = <<>> THEN <<>>
    ELSE LET s == Gen(tls, Head(lasts)) IN <<s>> \o GenMany(s, Tail(lasts))

-----------------------------------------------------------------------------
(* Packets and wrappers (packet.rs, wrapper.rs).                           *)
(* Packet  = [id, pay, sub, missing, g]; sub = [listed children ->       *)
(*           Packet \cup {Null}] (Null = void slot); <<>> for a leaf.      *)
(* Wrapper = [pkt, by, ser, g]: priority (by = Null, pkt # Null), bundled  *)
(*           (by = the parent, pkt = Null) or limbo (by = the parent, pkt  *)
(*           = the carried packet).                                        *)
(* g: 0, except for the wrappers and packets a bundle creates on a tree    *)
(* with a hard link, where it numbers them within the bundle operation     *)
(* (identity only: see BundleId and tla/README.md "Identity").             *)

PWg(p, s, g) == [pkt |-> p, by |-> Null, ser |-> s, g |-> g]
PW(p, s)  == PWg(p, s, 0)
BWg(n, s, g) == [pkt |-> Null, by |-> n, ser |-> s, g |-> g]
LW(n, s, p) == [pkt |-> p, by |-> n, ser |-> s, g |-> 0]
HasPri(w) == w.by = Null

\* Packet::is_complete
Complete(p) == ~p.missing \/ DOMAIN p.sub = {}

\* Nodes with a packet (present slot) / with a void slot in p's tree.
RECURSIVE PresentNodes(_)
PresentNodes(p) ==
    {c \in DOMAIN p.sub : p.sub[c] # Null}
    \cup UNION {PresentNodes(p.sub[c]) : c \in {d \in DOMAIN p.sub : p.sub[d] # Null}}
RECURSIVE VoidNodes(_)
VoidNodes(p) ==
    {c \in DOMAIN p.sub : p.sub[c] = Null}
    \cup UNION {VoidNodes(p.sub[c]) : c \in {d \in DOMAIN p.sub : p.sub[d] # Null}}

\* packet::all_sub_reachable: every void slot names a node whose packet is
\* present in another slot of the same tree (on a tree without hard links
\* a void slot's node cannot be present elsewhere: no void slot at all).
AllSubReachable(p) == VoidNodes(p) \subseteq PresentNodes(p)

\* The present slots of p's tree as a list (a node twice: held in two places).
RECURSIVE PList(_)
PList(p) ==
    LET L == ListOf(p)
        F[i \in 0..Len(L)] ==
            IF i = 0 THEN <<>>
            ELSE F[i - 1] \o (IF p.sub[L[i]] = Null THEN <<>> ELSE <<L[i]>> \o PList(p.sub[L[i]]))
    IN F[Len(L)]
NoDup(p) == Len(PList(p)) = Cardinality({PList(p)[i] : i \in DOMAIN PList(p)})
\* The present slots of the tree of node n's packet p, as <<parent, child>>.
RECURSIVE PEdges(_, _)
PEdges(p, n) ==
    UNION {{<<n, c>>} \cup PEdges(p.sub[c], c) : c \in {d \in DOMAIN p.sub : p.sub[d] # Null}}

\* Some void slot in p's tree.
HasVoid(p) == VoidNodes(p) # {}

\* Some present leaf in p's tree (n: p's node).
RECURSIVE HasLeaf(_, _)
HasLeaf(p, n) == n \in Leaves \/ \E c \in DOMAIN p.sub : p.sub[c] # Null /\ HasLeaf(p.sub[c], c)

\* The new version a transaction at n publishes (the closure: every leaf
\* in n's snapshot gets +d, through Transaction::get_mut: the packets on
\* the paths to them are new copies, every other packet and every void
\* slot is kept as it is).  d = 1, or 0 for an Endless thread (a write of
\* the same value: still new packets).
RECURSIVE NewPkt(_, _, _, _)
NewPkt(p, n, s, d) ==
    IF n \in Leaves THEN [p EXCEPT !.pay = @ + d, !.id = s]
    ELSE [p EXCEPT !.id = s,
                   !.sub = [c \in DOMAIN @ |-> IF @[c] # Null /\ HasLeaf(@[c], c)
                                                 THEN NewPkt(@[c], c, s, d) ELSE @[c]]]

\* Leaves whose payload NewPkt(p, n, s, 1) increments.
RECURSIVE LeavesIn(_, _)
LeavesIn(p, n) ==
    IF n \in Leaves THEN {n}
    ELSE UNION {LeavesIn(p.sub[c], c) : c \in {d \in DOMAIN p.sub : p.sub[d] # Null}}

\* The versions the dynamic transactions publish (Transaction::insert_impl
\* marks the path missing and appends the child; release removes it).
InsPkt(p, slot, s) == [p EXCEPT !.id = s, !.missing = TRUE, !.sub = @ @@ (DynChild :> slot)]
RelPkt(p, s) ==
    LET d == DOMAIN p.sub \ {DynChild} IN
    [p EXCEPT !.id = s, !.sub = [c \in d |-> @[c]], !.missing = d # {}]

\* A node as created and inserted: leaves own their packet; a parent lists
\* its children with void slots and is missing until bundled.
InitPkt(n) == [id |-> 0, pay |-> 0,
               sub |-> IF n \in Leaves THEN <<>> ELSE [c \in KidSet(n) |-> Null],
               missing |-> n \notin Leaves /\ KidSet(n) # {}, g |-> 0]

-----------------------------------------------------------------------------
(* Priority tags (src/negotiation.rs).  A transaction's stamp is a Lamport *)
(* serial minted when it starts (Negotiator::new: serial::next(0)) and kept *)
(* across its retries; a smaller stamp is older.  A tag holds a stamp.      *)

MyTag(t) == stamp[t]
\* Priority classes (issue 11, src/priority.rs): 0 Realtime, 1 Normal,
\* 2 Interactive, 3 Background; a thread's transactions all have its class.
\* The tag order is (class, age, thread id): a higher class (smaller
\* number) wins whatever the ages, and within a class the older (smaller
\* stamp; its remainder is the thread id) wins (priority::wins).
StampClass(a) == ThreadClass[a % SerialBase]
TagOlder(a, b) ==
    \/ StampClass(a) < StampClass(b)
    \/ StampClass(a) = StampClass(b) /\ a < b
SameThread(a, t) == a % SerialBase = t

CanProceed(t, n) ==
    IF ~Privilege \/ priorityTag[n] = Null THEN TRUE ELSE SameThread(priorityTag[n], t)

\* Whether t's next failed commit CAS is soft: no tag (CommitParent,
\* CommitTryCAS; CommitRead's conflict after it).
Soft(t) == t \notin ReaderThreads /\ ThreadClass[t] # 0 /\ local[t].soft > 0

TagAfterFail(t, n) ==
    IF ~Privilege THEN priorityTag[n]
    ELSE IF priorityTag[n] = Null THEN MyTag(t)
    ELSE IF TagOlder(MyTag(t), priorityTag[n]) THEN MyTag(t)
    ELSE priorityTag[n]           \* ours already, or an older transaction's

TagAfterSuccess(t, n) == priorityTag[n]

ClearMyTags(t) ==
    IF ~Privilege THEN priorityTag
    ELSE [n \in Nodes |-> IF priorityTag[n] = MyTag(t) THEN Null ELSE priorityTag[n]]

CasFailed(t, n)    == priorityTag' = [priorityTag EXCEPT ![n] = TagAfterFail(t, n)]
\* TagAfterFail on every node of S (one Rust step tagging several linkages).
ConflictTags(t, S) == [n \in Nodes |-> IF n \in S THEN TagAfterFail(t, n) ELSE priorityTag[n]]
CasSucceeded(t, n) == priorityTag' = [priorityTag EXCEPT ![n] = TagAfterSuccess(t, n)]

-----------------------------------------------------------------------------
(* Operation state: a stack of bundle / unbundle frames (mod.rs Frame) on  *)
(* top of the snapshot or commit frame, which op names.                    *)
(* One record shape for both frame kinds (unused fields Null / empty).     *)
(*   bundle:   node, w (the node's wrapper as last seen or installed), ser *)
(*             (bundle serial), isRoot, coll (collected [pkt, w] per child *)
(*             so far; w = Null: nothing to CAS in phase 3), incomplete,   *)
(*             idx (phase-3 position)                                      *)
(*   unbundle: node (the target), tw (its wrapper), mode ("snap",          *)
(*             "commit", "promote", "bundle"), ser and inprog (bundle      *)
(*             serial and nodes being bundled, "bundle" mode), chain       *)
(*             (ancestors walked, nearest first, [node, w]), found,        *)
(*             copies, casPos, rc (next level UnbundleRecheck loads)       *)

Frame0 == [kind |-> Null, node |-> Null, w |-> Null, ser |-> Null, isRoot |-> FALSE,
           seal |-> FALSE, coll |-> <<>>, incomplete |-> FALSE, idx |-> 0,
           mode |-> Null, tw |-> Null, chain |-> <<>>, found |-> Null,
           copies |-> <<>>, casPos |-> 0, inprog |-> {}, rc |-> 0]

BundleFrame(n, w, s, isRoot) ==
    [Frame0 EXCEPT !.kind = "bundle", !.node = n, !.w = w, !.ser = s, !.isRoot = isRoot]
\* A seal's frame (BundleFrame::seal): a root bundle whose phase 1 is SealPhase1.
SealFrame(n, w, s) == [BundleFrame(n, w, s, TRUE) EXCEPT !.seal = TRUE]
\* The phase-1 step of a bundle frame.
P1(f) == IF f.seal THEN "seal_phase1" ELSE "bundle_phase1"

UnbundleFrame(n, tw, mode, s, inprog) ==
    [Frame0 EXCEPT !.kind = "unbundle", !.node = n, !.tw = tw, !.mode = mode, !.ser = s,
                   !.inprog = inprog]

\* op: what sits below the frames: "snap" (the snapshot frame), "closure"
\* (a dynamic step of the transaction body) or "commit" (the commit frame).
\* job: the transaction (= target).  snapPkt / snapW: the snapshot's packet
\* and wrapper (= the commit's `old` and `snap_wrapper`); readW:
\* commit_read's wrapper; result: commit result.  Dynamic steps: txSer
\* (Transaction::serial), dynW (the child's wrapper read), insSlot (the
\* packet an online insert pulled), dynOp (the child CAS TxValidate leads
\* to: "rel" or "ins"), doomed (Validate = FALSE only: a release found the
\* child changed, the body went on, the attempt will not commit).  bgen:
\* wrappers and packets this bundle operation has created so far
\* (hard-link trees only, see BundleId).  comW: the wrapper a commit of a
\* job that seals installed (SealJob; SealStart compares the root with it).
\* soft: the soft losses the job has left (Soft); sf: the commit's last CAS
\* failed softly (CommitRead's conflict then tags nothing).
Local0 == [op |-> Null, job |-> Null, stack |-> <<>>, snapPkt |-> Null, snapW |-> Null,
           readW |-> Null, result |-> Null, txSer |-> Null, dynW |-> Null, insSlot |-> Null,
           bgen |-> 0, dynOp |-> Null, doomed |-> FALSE, rebased |-> FALSE, comW |-> Null,
           soft |-> SoftLosses, sf |-> FALSE]
\* A new attempt of the same job (soft: the soft losses left, kept).
Retry(l) == [Local0 EXCEPT !.op = "snap", !.job = l.job, !.soft = l.soft]

Top(l) == l.stack[Len(l.stack)]
SetTop(l, f) == [l EXCEPT !.stack = [@ EXCEPT ![Len(@)] = f]]
PopL(l) == [l EXCEPT !.stack = SubSeq(@, 1, Len(@) - 1)]
PushL(l, f) == [l EXCEPT !.stack = Append(@, f)]

\* Abandon everything and take the snapshot again (a Disturbed outcome is
\* passed down every frame to the snapshot frame, which retries).
\* The snapshot of a rebase (op "rebase", below) starts again keeping the
\* transaction: the snapshot frame retries, the attempt goes on.
Disturbed(l) == IF l.op = "seal" THEN [pc |-> "seal_end", l |-> [l EXCEPT !.stack = <<>>]]
                ELSE [pc |-> "snap_check",
                      l  |-> IF l.op = "rebase" THEN [l EXCEPT !.stack = <<>>, !.bgen = 0]
                             ELSE Retry(l)]

\* Transaction::rebase's comparison (snapshot.rs same_state, strict voids):
\* both packets hold the same state of the subtree.  A payload's identity
\* is its value here (every write increments it); child lists by their
\* children; a slot void in both is compared where the tree holds it.
RECURSIVE SameState(_, _)
SameState(a, b) ==
    \/ a = b
    \/ /\ a.pay = b.pay
       /\ DOMAIN a.sub = DOMAIN b.sub
       /\ \A c \in DOMAIN a.sub :
            \/ a.sub[c] = Null /\ b.sub[c] = Null
            \/ a.sub[c] # Null /\ b.sub[c] # Null /\ SameState(a.sub[c], b.sub[c])

\* The snapshot is taken: run the body (its dynamic steps, if any), then commit.
\* insert_online pulls the child only when it is not in the subtree yet
\* (insert_impl's in_tree: else the new slot is void, a hard link inside the
\* subtree); release CASes the child only when its slot held its packet and
\* the child is not found elsewhere in the subtree after the removal
\* ("reins": 2 levels, C1 listed with its packet, then insert_online; the
\* insert follows the release, see ReleaseCASChild).  "cond": the body asks
\* to retry while C1 is below 1 in the snapshot (2 levels, static tree).
\* The end of a rebase's snapshot (Transaction::rebase_onto): the same
\* state, so the commit is tried again against it; else the conflict
\* stands (the next attempt).
RebaseCheck(l, p, w) ==
    IF SameState(l.snapPkt, p)
    THEN [pc |-> "commit_start",
          l  |-> [l EXCEPT !.op = "commit", !.snapPkt = p, !.snapW = w, !.bgen = 0]]
    ELSE [pc |-> "snap_check", l |-> Retry(l)]

SnapDone(l, p, w) ==
    IF l.op = "rebase" THEN RebaseCheck(l, p, w) ELSE
    LET next == CASE l.job = "ins" /\ Online /\ DynChild \notin PresentNodes(p)
                       -> "insert_read_child"
                  [] l.job \in {"rel", "reins"} /\ p.sub[DynChild] # Null
                                   /\ DynChild \notin PresentNodes(RelPkt(p, 0))
                       -> "release_read_child"
                  [] l.job = "reins" -> Assert(FALSE, "reins: C1 is not listed with its packet")
                  [] l.job = "cond" /\ p.sub["C1"].pay < 1
                       -> "body_retry"
                  [] l.job = "stop" /\ p.sub["C1"].pay < 1
                       -> "commit_done"
                  [] l.job = "read" -> "commit_done"
                  [] OTHER -> "commit_start"
    IN [pc |-> next,
        l  |-> [l EXCEPT !.op = CASE next = "commit_start" -> "commit"
                                  [] next = "body_retry"   -> "body"
                                  [] next = "commit_done"  -> "read"
                                  [] OTHER                 -> "closure",
                         !.result = IF next = "commit_done" THEN "ok" ELSE @,
                         !.snapPkt = p, !.snapW = w, !.bgen = 0]]

\* Identity of what a bundle creates (Rust: a fresh Arc each time).  Every
\* other new wrapper or packet carries a fresh serial; a bundle's carry its
\* bundle serial, shared by the nested bundles of one operation, and on a
\* tree with a hard link one operation may create equal-looking ones twice
\* (a phase-2 rerun after phase 3 met this bundle's serial, a nested bundle
\* that stays missing, a child bundled again): there each gets g = the
\* operation's count so far.  Without hard links no bundle value repeats
\* (tla/README.md "Identity") and g stays 0.
BundleId(l) == IF HL THEN l.bgen + 1 ELSE 0
BumpId(l) == IF HL THEN [l EXCEPT !.bgen = @ + 1] ELSE l

\* Phase 1 collected one more child (BundleFrame::push).
Collect(l, p, w) ==
    LET f  == Top(l)
        f2 == [f EXCEPT !.coll = Append(@, [pkt |-> p, w |-> w]),
                        !.incomplete = IF p = Null THEN TRUE ELSE @ \/ ~Complete(p)]
    IN [pc |-> IF Len(f2.coll) = Len(ListOf(f2.w.pkt)) THEN "bundle_phase2" ELSE P1(f2),
        l  |-> SetTop(l, f2)]

\* First phase-3 position at or after i that has a wrapper to CAS (0: none).
NextP3(coll, i) ==
    LET S == {j \in i..Len(coll) : coll[j].w # Null}
    IN IF S = {} THEN 0 ELSE CHOOSE j \in S : \A k \in S : j <= k

\* A finished frame hands its outcome to the frame below (the Rust `returned`
\* argument of the next step).  l has the finished frame popped already.
\* r.kind: "success" (bundle, r.w), "found" (r.p), "newsub" (r.inst: the
\* wrappers the unbundle installed, [node -> wrapper]), "collided",
\* "changed", "disturbed".
AfterReturn(l, r) ==
    IF l.stack = <<>> THEN
        IF l.op = "seal" THEN [pc |-> "seal_end", l |-> l]     \* seal_inserts' loop ends
        ELSE IF l.op \in {"snap", "rebase"} THEN                \* snap_check
            CASE r.kind = "success" -> SnapDone(l, r.w.pkt, r.w)
              [] r.kind = "found"   -> SnapDone(l, r.p, Null)
              [] OTHER -> [pc |-> "snap_check", l |-> l]
        ELSE IF l.op = "closure" THEN                           \* pull_child loop
            [pc |-> "insert_read_child", l |-> l]
        ELSE                                                    \* commit_read
            CASE r.kind = "newsub"  -> [pc |-> "commit_done", l |-> [l EXCEPT !.result = "ok"]]
              [] r.kind = "changed" -> [pc |-> "commit_done", l |-> [l EXCEPT !.result = "conflict"]]
              [] OTHER              -> [pc |-> "commit_read", l |-> l]
    ELSE                                                        \* bundle_phase1
        CASE r.kind = "success"  -> Collect(l, r.w.pkt, r.w)
          [] r.kind = "collided" -> Collect(l, Null, Null)
          [] r.kind = "newsub" ->
                \* BundleFrame::adopt: follow our own node's new wrapper if
                \* the unbundle replaced exactly the one we hold (SafeAdopt)
                \* (r.inst: node -> [old, new] wrappers the unbundle CASed).
                \* Then go on from the child's wrapper the unbundle
                \* installed (r.w), as from a first look that found priority
                \* (collect_priority), without loading the child again
                \* (FINDINGS #7).
                LET f  == Top(l)
                    l1 == IF f.node \in DOMAIN r.inst /\ (~SafeAdopt \/ r.inst[f.node].old = f.w)
                          THEN SetTop(l, [f EXCEPT !.w = r.inst[f.node].new])
                          ELSE l
                    c  == ListOf(f.w.pkt)[Len(f.coll) + 1]
                IN IF Complete(r.w.pkt) THEN Collect(l1, r.w.pkt, r.w)
                   ELSE [pc |-> "bundle_phase1", l |-> PushL(l1, BundleFrame(c, r.w, f.ser, FALSE))]
          [] OTHER -> Disturbed(l)

Outcome(kind) == [kind |-> kind, w |-> Null, p |-> Null, inst |-> <<>>]

\* Packets of every level of an unbundle chain that ends at a priority
\* ancestor: level 0 = the target, level k = that ancestor (locate()): the
\* slot in the level above if it lists the node with a packet, else the
\* packet a limbo wrapper carries; Null (and Null below) if neither.
LevelNode(f, j) == IF j = 0 THEN f.node ELSE f.chain[j].node
LevelW(f, j) == IF j = 0 THEN f.tw ELSE f.chain[j].w
RECURSIVE LevelPkt(_, _)
LevelPkt(f, j) ==
    IF j = Len(f.chain) THEN f.chain[j].w.pkt
    ELSE LET up == LevelPkt(f, j + 1)
             n  == LevelNode(f, j)
         IN IF up = Null THEN Null
            ELSE IF n \in DOMAIN up.sub /\ up.sub[n] # Null THEN up.sub[n]
            ELSE LevelW(f, j).pkt

-----------------------------------------------------------------------------
Init ==
    /\ linkage = [n \in Nodes |-> PW(InitPkt(n), 0)]
    /\ serial = [t \in Threads |-> t]
    /\ pc = [t \in Threads |-> "idle"]
    /\ target = [t \in Threads |-> Null]
    /\ local = [t \in Threads |-> Local0]
    /\ budget = [t \in Threads |-> MaxCommits]
    /\ queue = [t \in Threads |-> {}]
    /\ priorityTag = [n \in Nodes |-> Null]
    /\ stamp = [t \in Threads |-> Null]
    /\ credit = [c \in Leaves |-> 0]
    /\ dropper = [node |-> Null, st |-> "live", i |-> 0, ser |-> 0]

\* The transactions one iteration of t runs, in this order.
JobOrder == CASE Levels = 2 -> <<"ins", "reins", "cond", "stop", "read", "P", "C1", "C2", "rel">>
              [] ~HL        -> <<"read", "G", "P", "C1", "C2">>
              [] OTHER      -> <<"ins", "read", "G", "P", "Q", "C1", "rel">>
Jobs(t) == (IF t \in RootThreads THEN {RootNode} ELSE {})
           \cup (IF t \in MidThreads THEN MidNodes ELSE {})
           \cup (IF t \in LeafThreads THEN LeafWrites ELSE {})
           \cup (IF t \in DynThreads THEN DynJobs ELSE {})
           \cup (IF t \in CondThreads THEN {"cond"} ELSE {})
           \cup (IF t \in ReaderThreads THEN {"read"} ELSE {})
           \cup (IF t \in StopThreads THEN {"stop"} ELSE {})
\* The node a transaction runs on.
JobNode(j) == IF j \in {"ins", "reins", "rel", "cond", "stop", "read"} THEN RootNode ELSE j
FirstJob(q) == JobOrder[CHOOSE i \in DOMAIN JobOrder :
                           JobOrder[i] \in q /\ \A j \in 1..(i - 1) : JobOrder[j] \notin q]

-----------------------------------------------------------------------------
(* snapshot.rs *)

\* Entry of a snapshot.  Here also: the start of the transaction (drive():
\* Negotiator::new mints its stamp) and the choice of the next transaction
\* of the iteration (role plumbing); no shared memory.
SnapRead(t) ==
    /\ pc[t] = "idle"
    /\ budget[t] > 0
    /\ LET q  == IF queue[t] = {} THEN Jobs(t) ELSE queue[t]
           st == Gen(serial[t], 0)
       IN
         /\ queue' = [queue EXCEPT ![t] = q]
         /\ target' = [target EXCEPT ![t] = FirstJob(q)]
         /\ local' = [local EXCEPT ![t] = [Local0 EXCEPT !.op = "snap", !.job = FirstJob(q)]]
         /\ stamp' = [stamp EXCEPT ![t] = st]
         /\ serial' = [serial EXCEPT ![t] = st]
    /\ pc' = [pc EXCEPT ![t] = "snap_check"]
    /\ UNCHANGED <<linkage, budget, priorityTag, credit>>

SnapCheck(t) ==
    /\ pc[t] = "snap_check"
    /\ LET n == JobNode(target[t])
           w == linkage[n]
           l == local[t]
       IN
       IF HasPri(w) /\ Complete(w.pkt) THEN
            LET r == SnapDone(l, w.pkt, w) IN
            /\ pc' = [pc EXCEPT ![t] = r.pc]
            /\ local' = [local EXCEPT ![t] = r.l]
            /\ UNCHANGED serial
       ELSE IF HasPri(w) THEN
            LET b == Gen(serial[t], w.ser) IN
            /\ serial' = [serial EXCEPT ![t] = b]
            /\ pc' = [pc EXCEPT ![t] = "bundle_phase1"]
            /\ local' = [local EXCEPT ![t] = PushL(l, BundleFrame(n, w, b, TRUE))]
       ELSE
            /\ pc' = [pc EXCEPT ![t] = "unbundle_walk"]
            /\ local' = [local EXCEPT ![t] = PushL(l, UnbundleFrame(n, w, "snap", Null, {}))]
            /\ UNCHANGED serial
    /\ UNCHANGED <<linkage, target, budget, queue, priorityTag, credit, stamp>>

-----------------------------------------------------------------------------
(* bundle.rs *)

\* Nodes of the bundle frames on the stack (BundleFrame::in_progress).
InProgress(l) == {l.stack[i].node : i \in {j \in DOMAIN l.stack : l.stack[j].kind = "bundle"}}

\* Every child those frames collected so far with a wrapper: a node whose
\* packet lies inside one of them is inside the bundle being built
\* (BundleFrame::inside, with InProgress).  Only the collision test reads
\* it: a child that is itself such a node is loaded and handled as usual.
Collected(l) ==
    LET B == {j \in DOMAIN l.stack : l.stack[j].kind = "bundle"}
        Coll(f) == {ListOf(f.w.pkt)[k] : k \in {m \in 1..Len(f.coll) : f.coll[m].w # Null}}
    IN UNION {Coll(l.stack[i]) : i \in B}

\* The children those frames have still to collect, after the one each works
\* on (BundleFrame::pending_after): a node inside one of them will come into
\* the bundle with it, so taking it out of there is a collision too.
Pending(l) ==
    LET B == {j \in DOMAIN l.stack : l.stack[j].kind = "bundle"}
        Later(f) == {ListOf(f.w.pkt)[k] : k \in (Len(f.coll) + 2)..Len(ListOf(f.w.pkt))}
    IN UNION {Later(l.stack[i]) : i \in B}

\* Loads the next child; collects it, or starts a nested bundle / unbundle.
BundlePhase1(t) ==
    /\ pc[t] = "bundle_phase1"
    /\ LET l  == local[t]
           f  == Top(l)
           c  == ListOf(f.w.pkt)[Len(f.coll) + 1]
           cw == linkage[c]
           slot == f.w.pkt.sub[c]
       IN
       IF HasPri(cw) /\ Complete(cw.pkt) THEN
            LET r == Collect(l, cw.pkt, cw) IN
            /\ pc' = [pc EXCEPT ![t] = r.pc]
            /\ local' = [local EXCEPT ![t] = r.l]
       ELSE IF HasPri(cw) THEN
            \* missing packet: bundle the child first, same serial
            /\ pc' = [pc EXCEPT ![t] = "bundle_phase1"]
            /\ local' = [local EXCEPT ![t] = PushL(l, BundleFrame(c, cw, f.ser, FALSE))]
       ELSE IF cw.by = f.node /\ slot # Null /\ Complete(slot) THEN
            \* already bundled into (or in limbo under) this node: phase 3
            \* re-stamps it (RestampBundled) or leaves it alone
            LET r == Collect(l, slot, IF RestampBundled THEN cw ELSE Null) IN
            /\ pc' = [pc EXCEPT ![t] = r.pc]
            /\ local' = [local EXCEPT ![t] = r.l]
       ELSE IF cw.by = f.node THEN
            \* our slot for it is stale or void: give it priority back
            /\ pc' = [pc EXCEPT ![t] = "unbundle_walk"]
            /\ local' = [local EXCEPT ![t] = PushL(l, UnbundleFrame(c, cw, "promote", Null, {}))]
       ELSE
            \* bundled elsewhere (hard links only): unbundle unless collided
            /\ pc' = [pc EXCEPT ![t] = "unbundle_walk"]
            /\ local' = [local EXCEPT ![t] =
                   PushL(l, UnbundleFrame(c, cw, "bundle", f.ser,
                                             InProgress(l) \cup Collected(l) \cup Pending(l)))]
    /\ UNCHANGED <<linkage, serial, target, budget, queue, priorityTag, credit, stamp>>

\* Phase 1 of a seal: every present slot up to the next void one is kept
\* as it is, unread (the wrapper is the one the thread's own commit
\* installed on a complete base, whose slots these are: bundle.rs
\* seal_phase1); the child of that void slot is loaded and collected if it
\* has priority and a complete packet.  Anything else gives the seal up.
\* (`kept` stands for the code's slots left as they are: it collects no
\* entry for them, and BundlePhase2 here writes their own packet back.)
SealPhase1(t) ==
    /\ pc[t] = "seal_phase1"
    /\ LET l    == local[t]
           f    == Top(l)
           L    == ListOf(f.w.pkt)
           k    == Len(f.coll)
           V    == {i \in (k + 1)..Len(L) : f.w.pkt.sub[L[i]] = Null}
           v    == IF V = {} THEN Len(L) + 1 ELSE CHOOSE i \in V : \A j \in V : i <= j
           kept == [i \in 1..(v - k - 1) |-> [pkt |-> f.w.pkt.sub[L[k + i]], w |-> Null]]
           c    == L[v]
       IN
       IF v > Len(L) THEN
            /\ pc' = [pc EXCEPT ![t] = "bundle_phase2"]
            /\ local' = [local EXCEPT ![t] = SetTop(l, [f EXCEPT !.coll = @ \o kept])]
       ELSE IF c = f.node \/ ~(HasPri(linkage[c]) /\ Complete(linkage[c].pkt)) THEN
            LET r == Disturbed(l) IN
            /\ pc' = [pc EXCEPT ![t] = r.pc]
            /\ local' = [local EXCEPT ![t] = r.l]
       ELSE
            /\ pc' = [pc EXCEPT ![t] = IF v = Len(L) THEN "bundle_phase2" ELSE "seal_phase1"]
            /\ local' = [local EXCEPT ![t] =
                   SetTop(l, [f EXCEPT !.coll = @ \o kept
                                        \o <<[pkt |-> linkage[c].pkt, w |-> linkage[c]]>>])]
    /\ UNCHANGED <<linkage, serial, target, budget, queue, priorityTag, credit, stamp>>

\* CAS the node to a packet holding the collected slots, still missing.
BundlePhase2(t) ==
    /\ pc[t] = "bundle_phase2"
    /\ LET l  == local[t]
           f  == Top(l)
           n  == f.node
           np == [id |-> f.ser, pay |-> f.w.pkt.pay, missing |-> TRUE, g |-> BundleId(l),
                  sub |-> [c \in DOMAIN f.w.pkt.sub |-> f.coll[IndexIn(f.w.pkt, c)].pkt]]
           nw == PWg(np, f.ser, BundleId(l))
           i3 == NextP3(f.coll, 1)
       IN
       /\ CanProceed(t, n)
       /\ IF linkage[n] = f.w THEN
               /\ linkage' = [linkage EXCEPT ![n] = nw]
               /\ CasSucceeded(t, n)
               /\ pc' = [pc EXCEPT ![t] = IF i3 = 0 THEN "bundle_phase4" ELSE "bundle_phase3"]
               /\ local' = [local EXCEPT ![t] = SetTop(BumpId(l), [f EXCEPT !.w = nw, !.idx = i3])]
          ELSE LET r == Disturbed(l) IN
               /\ CasFailed(t, n)
               /\ pc' = [pc EXCEPT ![t] = r.pc]
               /\ local' = [local EXCEPT ![t] = r.l]
               /\ UNCHANGED linkage
    /\ UNCHANGED <<serial, target, budget, queue, credit, stamp>>

\* CAS one collected child to a bundled reference with this bundle's serial.
BundlePhase3(t) ==
    /\ pc[t] = "bundle_phase3"
    /\ LET l  == local[t]
           f  == Top(l)
           i  == f.idx
           c  == ListOf(f.w.pkt)[i]
           ew == f.coll[i].w
           f1 == [f EXCEPT !.coll[i].w = Null]      \* wrapper.take()
       IN
       /\ CanProceed(t, c)
       /\ IF linkage[c] = ew THEN
               LET i3 == NextP3(f1.coll, i + 1) IN
               /\ linkage' = [linkage EXCEPT ![c] = BWg(f.node, f.ser, BundleId(l))]
               /\ CasSucceeded(t, c)
               /\ pc' = [pc EXCEPT ![t] = IF i3 = 0 THEN "bundle_phase4" ELSE "bundle_phase3"]
               /\ local' = [local EXCEPT ![t] = SetTop(BumpId(l), [f1 EXCEPT !.idx = i3])]
          ELSE
               /\ CasFailed(t, c)
               /\ UNCHANGED linkage
               /\ IF linkage[c].ser = f.ser THEN
                      \* changed by this very bundle through another path: collect again
                      /\ pc' = [pc EXCEPT ![t] = P1(f)]
                      /\ local' = [local EXCEPT ![t] =
                            SetTop(l, [f EXCEPT !.coll = <<>>, !.incomplete = FALSE, !.idx = 0])]
                  ELSE LET r == Disturbed(l) IN
                      /\ pc' = [pc EXCEPT ![t] = r.pc]
                      /\ local' = [local EXCEPT ![t] = r.l]
    /\ UNCHANGED <<serial, target, budget, queue, credit, stamp>>

\* CAS the node to the same slots marked complete (a nested bundle that met
\* a void slot stays missing; a root bundle with an unreachable void slot
\* gives up without a CAS).
BundlePhase4(t) ==
    /\ pc[t] = "bundle_phase4"
    /\ LET l  == local[t]
           f  == Top(l)
           n  == f.node
           np == [f.w.pkt EXCEPT !.missing = ~f.isRoot /\ f.incomplete, !.g = BundleId(l)]
           nw == PWg(np, f.ser, BundleId(l))
       IN
       /\ CanProceed(t, n)
       /\ IF f.isRoot /\ f.incomplete /\ ~AllSubReachable(np) THEN
            LET r == Disturbed(l) IN
            /\ pc' = [pc EXCEPT ![t] = r.pc]
            /\ local' = [local EXCEPT ![t] = r.l]
            /\ UNCHANGED <<linkage, priorityTag, stamp>>
          ELSE
            /\ IF linkage[n] = f.w THEN
                    LET r == AfterReturn(PopL(BumpId(l)), [Outcome("success") EXCEPT !.w = nw]) IN
                    /\ linkage' = [linkage EXCEPT ![n] = nw]
                    /\ CasSucceeded(t, n)
                    /\ pc' = [pc EXCEPT ![t] = r.pc]
                    /\ local' = [local EXCEPT ![t] = r.l]
               ELSE LET r == Disturbed(l) IN
                    /\ CasFailed(t, n)
                    /\ pc' = [pc EXCEPT ![t] = r.pc]
                    /\ local' = [local EXCEPT ![t] = r.l]
                    /\ UNCHANGED linkage
    /\ UNCHANGED <<serial, target, budget, queue, credit, stamp>>

-----------------------------------------------------------------------------
(* unbundle.rs *)

\* locate()'s `inside`: the target's packet lies inside the packets of the
\* levels 1..Inside(f) (found in listed slots, not carried by a limbo
\* wrapper).  UnbundleFrame::collided: in Bundle mode, one of those levels
\* carries the bundle serial, is being bundled or was collected by this
\* operation, or is a child it has still to collect (inprog).
InSlot(f, j) ==
    LET up == LevelPkt(f, j + 1) n == LevelNode(f, j) IN
    up # Null /\ n \in DOMAIN up.sub /\ up.sub[n] # Null
Inside(f) ==
    LET J == {j \in 0..(Len(f.chain) - 1) : ~InSlot(f, j)} IN
    IF J = {} THEN Len(f.chain) ELSE CHOOSE j \in J : \A i \in J : j <= i
Collided(f) ==
    /\ f.mode = "bundle"
    /\ \E i \in 1..Inside(f) : f.chain[i].w.ser = f.ser \/ f.chain[i].node \in f.inprog

\* Loads the next ancestor; at a priority ancestor locates the target's
\* packet and either returns (read-only snapshot, conflict, collision,
\* disturbed) or prepares the missing copies of every ancestor (one fresh
\* serial each, nearest first) for the CAS steps.
UnbundleWalk(t) ==
    /\ pc[t] = "unbundle_walk"
    /\ LET l     == local[t]
           f     == Top(l)
           lower == IF f.chain = <<>> THEN f.tw ELSE f.chain[Len(f.chain)].w
           par   == lower.by
           \* the parent's last strong reference is gone (Weak::upgrade
           \* fails): its Linkage::drop has started (DropStart)
           gone  == dropper.node = par /\ dropper.st # "live"
           \* gone, but the target's own limbo wrapper carries its packet
           carried == gone /\ f.chain = <<>> /\ lower.pkt # Null
           pw    == linkage[par]
           f2    == IF gone THEN f ELSE [f EXCEPT !.chain = Append(@, [node |-> par, w |-> pw])]
           k     == Len(f2.chain)
           found == IF gone THEN lower.pkt ELSE LevelPkt(f2, 0)
           sers  == GenMany(serial[t], [i \in 1..k |-> f2.chain[i].w.ser])
           copies == [i \in 1..k |->
                        PW([LevelPkt(f2, i) EXCEPT !.missing = TRUE, !.id = sers[i]], sers[i])]
           Ret(kind, p) == AfterReturn(PopL(l), [Outcome(kind) EXCEPT !.p = p])
       IN
       IF gone /\ ~carried THEN
            \* nothing to read until the drop hands the packet back: look
            \* again (no tag: nobody won a race)
            LET r == Ret("disturbed", Null) IN
            /\ pc' = [pc EXCEPT ![t] = r.pc]
            /\ local' = [local EXCEPT ![t] = r.l]
            /\ UNCHANGED <<serial, priorityTag>>
       ELSE IF ~gone /\ ~HasPri(pw) THEN
            /\ pc' = [pc EXCEPT ![t] = "unbundle_walk"]
            /\ local' = [local EXCEPT ![t] = SetTop(l, f2)]
            /\ UNCHANGED <<serial, priorityTag>>
       ELSE IF found = Null THEN
            \* locate() found nothing: Disturbed; with TagOnConflict the
            \* target is tagged
            LET r == Ret("disturbed", Null) IN
            /\ pc' = [pc EXCEPT ![t] = r.pc]
            /\ local' = [local EXCEPT ![t] = r.l]
            /\ priorityTag' = IF TagOnConflict THEN ConflictTags(t, {f.node}) ELSE priorityTag
            /\ UNCHANGED serial
       ELSE IF Collided(f2) THEN
            LET r == Ret("collided", Null) IN
            /\ pc' = [pc EXCEPT ![t] = r.pc]
            /\ local' = [local EXCEPT ![t] = r.l]
            /\ UNCHANGED <<serial, priorityTag>>
       ELSE IF f.mode = "snap" /\ Complete(found) THEN
            \* read-only: load every level below the ancestor again first
            /\ pc' = [pc EXCEPT ![t] = "unbundle_recheck"]
            /\ local' = [local EXCEPT ![t] = SetTop(l, [f2 EXCEPT !.found = found, !.rc = 0])]
            /\ UNCHANGED <<serial, priorityTag>>
       ELSE IF f.mode = "commit" /\ found # l.snapPkt THEN
            \* SubvalueChanged: the commit's conflict; with TagOnConflict the
            \* target and every linkage of the walked chain are tagged
            LET r == Ret("changed", Null) IN
            /\ pc' = [pc EXCEPT ![t] = r.pc]
            /\ local' = [local EXCEPT ![t] = r.l]
            /\ priorityTag' = IF TagOnConflict
                               THEN ConflictTags(t, {f.node} \cup {f2.chain[i].node : i \in 1..k})
                               ELSE priorityTag
            /\ UNCHANGED serial
       ELSE
            /\ serial' = [serial EXCEPT ![t] = IF k = 0 THEN serial[t] ELSE sers[k]]
            /\ pc' = [pc EXCEPT ![t] = IF k = 0 THEN "unbundle_cas_child"
                                                 ELSE "unbundle_cas_ancestors"]
            /\ local' = [local EXCEPT ![t] =
                   SetTop(l, [f2 EXCEPT !.found = found, !.copies = copies, !.casPos = k])]
            /\ UNCHANGED priorityTag
    /\ UNCHANGED <<linkage, target, budget, queue, credit, stamp>>

\* CAS one ancestor (root first) to its missing copy.
\* A read-only result combines loads made one after another, bottom up: the
\* target's wrapper first, the priority ancestor's last.  Each level below
\* the ancestor (level 0 = the target) is loaded again, one per step; all
\* unchanged: they held when the ancestor was read, and the packet found is
\* returned.  A changed one: a reader's lost race, which tags the target.  Without it a
\* reader combined a limbo wrapper it had read before the limbo's attempt
\* failed with the ancestors after another commit (tla/FINDINGS.md).
UnbundleRecheck(t) ==
    /\ pc[t] = "unbundle_recheck"
    /\ LET l == local[t]
           f == Top(l)
           j == f.rc
           Ret(kind, p) == AfterReturn(PopL(l), [Outcome(kind) EXCEPT !.p = p])
       IN
       IF linkage[LevelNode(f, j)] # LevelW(f, j) THEN
            \* a reader's lost race: with TagOnConflict the target is
            \* tagged (FINDINGS #8)
            LET r == Ret("disturbed", Null) IN
            /\ pc' = [pc EXCEPT ![t] = r.pc]
            /\ local' = [local EXCEPT ![t] = r.l]
            /\ priorityTag' = IF TagOnConflict THEN ConflictTags(t, {f.node}) ELSE priorityTag
       ELSE IF j + 1 >= Len(f.chain) THEN
            LET r == Ret("found", f.found) IN
            /\ pc' = [pc EXCEPT ![t] = r.pc]
            /\ local' = [local EXCEPT ![t] = r.l]
            /\ UNCHANGED priorityTag
       ELSE
            /\ local' = [local EXCEPT ![t] = SetTop(l, [f EXCEPT !.rc = j + 1])]
            /\ UNCHANGED <<pc, priorityTag>>
    /\ UNCHANGED <<linkage, serial, target, budget, queue, credit, stamp>>

UnbundleCASAncestors(t) ==
    /\ pc[t] = "unbundle_cas_ancestors"
    /\ LET l == local[t]
           f == Top(l)
           i == f.casPos
           n == f.chain[i].node
       IN
       /\ CanProceed(t, n)
       /\ IF linkage[n] = f.chain[i].w THEN
               /\ linkage' = [linkage EXCEPT ![n] = f.copies[i]]
               /\ CasSucceeded(t, n)
               /\ pc' = [pc EXCEPT ![t] = IF i = 1 THEN "unbundle_cas_child"
                                                   ELSE "unbundle_cas_ancestors"]
               /\ local' = [local EXCEPT ![t] = SetTop(l, [f EXCEPT !.casPos = i - 1])]
          ELSE LET r == AfterReturn(PopL(l), Outcome("disturbed")) IN
               /\ CasFailed(t, n)
               /\ pc' = [pc EXCEPT ![t] = r.pc]
               /\ local' = [local EXCEPT ![t] = r.l]
               /\ UNCHANGED linkage
    /\ UNCHANGED <<serial, target, budget, queue, credit, stamp>>

\* The version a transaction publishes, and the leaves it increments.
\* (t: the thread; an Endless one writes the same values.)
TxPkt(t, l, n, s) ==
    CASE l.job = "ins"   -> InsPkt(l.snapPkt, l.insSlot, s)
      [] l.job = "reins" -> InsPkt(RelPkt(l.snapPkt, s), l.insSlot, s)
      [] l.job = "rel"   -> RelPkt(l.snapPkt, s)
      [] OTHER           -> NewPkt(l.snapPkt, n, s, IF t \in Endless THEN 0 ELSE 1)
TxLeaves(t, l, n) == IF l.job \in {"ins", "reins", "rel"} \/ t \in Endless THEN {}
                     ELSE LeavesIn(l.snapPkt, n)
Credited(t, l, n) == [c \in Leaves |-> credit[c] + (IF c \in TxLeaves(t, l, n) THEN 1 ELSE 0)]

\* CAS the target to priority with its found packet (or, in a commit, the
\* transaction's new packet).
UnbundleCASChild(t) ==
    /\ pc[t] = "unbundle_cas_child"
    /\ LET l  == local[t]
           f  == Top(l)
           n  == f.node
           \* (an empty chain: the parent was gone, the target's limbo
           \* carried its packet)
           s  == Gen(serial[t], IF f.chain = <<>> THEN f.tw.ser
                                ELSE Max(f.chain[1].w.ser, f.tw.ser))
           p  == IF f.mode = "commit" THEN TxPkt(t, l, n, s) ELSE f.found
           nw == PW(p, s)
           inst == [m \in {f.chain[i].node : i \in 1..Len(f.chain)} |->
                      LET i == CHOOSE i \in 1..Len(f.chain) : f.chain[i].node = m
                      IN [old |-> f.chain[i].w, new |-> f.copies[i]]]
       IN
       /\ CanProceed(t, n)
       /\ serial' = [serial EXCEPT ![t] = s]
       /\ IF linkage[n] = f.tw THEN
               LET r == AfterReturn(PopL(l), [Outcome("newsub") EXCEPT !.inst = inst, !.w = nw]) IN
               /\ linkage' = [linkage EXCEPT ![n] = nw]
               /\ CasSucceeded(t, n)
               /\ pc' = [pc EXCEPT ![t] = r.pc]
               /\ local' = [local EXCEPT ![t] = r.l]
               /\ credit' = IF f.mode = "commit" THEN Credited(t, l, n) ELSE credit
          ELSE LET r == AfterReturn(PopL(l), Outcome("disturbed")) IN
               /\ CasFailed(t, n)
               /\ pc' = [pc EXCEPT ![t] = r.pc]
               /\ local' = [local EXCEPT ![t] = r.l]
               /\ UNCHANGED <<linkage, credit, stamp>>
    /\ UNCHANGED <<target, budget, queue, stamp>>

-----------------------------------------------------------------------------
(* commit.rs *)

\* The job is over (its negotiator dropped): the next one of the iteration.
Finish(t) ==
    LET q == queue[t] \ {target[t]} IN
    /\ queue' = [queue EXCEPT ![t] = q]
    /\ budget' = [budget EXCEPT ![t] = IF q = {} /\ t \notin Endless THEN @ - 1 ELSE @]
    /\ pc' = [pc EXCEPT ![t] = "idle"]
    /\ target' = [target EXCEPT ![t] = Null]
    /\ local' = [local EXCEPT ![t] = Local0]
    /\ stamp' = [stamp EXCEPT ![t] = Null]      \* the Negotiator is dropped

\* Transaction::may_seal: a plain insert (no limbo) of a node from outside
\* the tree, under the root.  ComW: the wrapper a commit installed, kept
\* for SealStart only where a seal follows.
SealJob(l) == SealInserts /\ l.job = "ins" /\ ~Online
              /\ DynChild \notin PresentNodes(l.snapPkt) \cup VoidNodes(l.snapPkt)
ComW(l, w) == IF SealJob(l) THEN w ELSE Null

\* The closure has run (its effect is TxPkt); choose the first commit step.
CommitStart(t) ==
    /\ pc[t] = "commit_start"
    /\ pc' = [pc EXCEPT ![t] = IF local[t].snapW # Null THEN "commit_parent" ELSE "commit_read"]
    /\ UNCHANGED <<linkage, serial, target, local, budget, queue, priorityTag, credit, stamp>>

\* CAS against the wrapper the snapshot was read from.
CommitParent(t) ==
    /\ pc[t] = "commit_parent"
    /\ LET l == local[t]
           n == JobNode(target[t])
           s == Gen(serial[t], l.snapW.ser)
       IN
       /\ CanProceed(t, n)
       /\ serial' = [serial EXCEPT ![t] = s]
       /\ IF linkage[n] = l.snapW THEN
               /\ linkage' = [linkage EXCEPT ![n] = PW(TxPkt(t, l, n, s), s)]
               /\ CasSucceeded(t, n)
               /\ credit' = Credited(t, l, n)
               /\ pc' = [pc EXCEPT ![t] = "commit_done"]
               /\ local' = [local EXCEPT ![t] = [l EXCEPT !.snapW = Null, !.result = "ok",
                                                      !.comW = ComW(l, PW(TxPkt(t, l, n, s), s))]]
          ELSE IF Soft(t) THEN
               \* a soft loss: no tag, one fewer left; read again
               /\ pc' = [pc EXCEPT ![t] = "commit_read"]
               /\ local' = [local EXCEPT ![t] = [l EXCEPT !.snapW = Null, !.soft = @ - 1,
                                                      !.sf = TRUE]]
               /\ UNCHANGED <<linkage, credit, stamp, priorityTag>>
          ELSE
               /\ CasFailed(t, n)
               /\ pc' = [pc EXCEPT ![t] = "commit_read"]
               /\ local' = [local EXCEPT ![t] = [l EXCEPT !.snapW = Null]]
               /\ UNCHANGED <<linkage, credit, stamp>>
    /\ UNCHANGED <<target, budget, queue, stamp>>

\* Load: still our packet (CAS it), another packet (conflict), or bundled
\* or in limbo (unbundle, installing our new packet).
CommitRead(t) ==
    /\ pc[t] = "commit_read"
    /\ LET l == local[t]
           n == JobNode(target[t])
           w == linkage[n]
       IN
       IF HasPri(w) /\ w.pkt = l.snapPkt THEN
            /\ pc' = [pc EXCEPT ![t] = "commit_try_cas"]
            /\ local' = [local EXCEPT ![t] = [l EXCEPT !.readW = w, !.sf = FALSE]]
            /\ UNCHANGED priorityTag
       ELSE IF HasPri(w) THEN
            \* conflict; with TagOnConflict it tags the node, unless it is
            \* what a soft CAS failure lost to
            /\ pc' = [pc EXCEPT ![t] = "commit_done"]
            /\ local' = [local EXCEPT ![t] = [l EXCEPT !.result = "conflict", !.sf = FALSE]]
            /\ priorityTag' = IF TagOnConflict /\ ~l.sf THEN ConflictTags(t, {n})
                              ELSE priorityTag
       ELSE
            /\ pc' = [pc EXCEPT ![t] = "unbundle_walk"]
            /\ local' = [local EXCEPT ![t] = PushL([l EXCEPT !.sf = FALSE],
                                                   UnbundleFrame(n, w, "commit", Null, {}))]
            /\ UNCHANGED priorityTag
    /\ UNCHANGED <<linkage, serial, target, budget, queue, credit, stamp>>

\* CAS against the wrapper commit_read loaded.
CommitTryCAS(t) ==
    /\ pc[t] = "commit_try_cas"
    /\ LET l == local[t]
           n == JobNode(target[t])
           s == Gen(serial[t], l.readW.ser)
       IN
       /\ CanProceed(t, n)
       /\ serial' = [serial EXCEPT ![t] = s]
       /\ IF linkage[n] = l.readW THEN
               /\ linkage' = [linkage EXCEPT ![n] = PW(TxPkt(t, l, n, s), s)]
               /\ CasSucceeded(t, n)
               /\ credit' = Credited(t, l, n)
               /\ pc' = [pc EXCEPT ![t] = "commit_done"]
               /\ local' = [local EXCEPT ![t] = [l EXCEPT !.readW = Null, !.result = "ok",
                                                      !.comW = ComW(l, PW(TxPkt(t, l, n, s), s))]]
          ELSE IF Soft(t) THEN
               \* a soft loss: no tag, one fewer left; read again
               /\ pc' = [pc EXCEPT ![t] = "commit_read"]
               /\ local' = [local EXCEPT ![t] = [l EXCEPT !.readW = Null, !.soft = @ - 1,
                                                      !.sf = TRUE]]
               /\ UNCHANGED <<linkage, credit, stamp, priorityTag>>
          ELSE
               /\ CasFailed(t, n)
               /\ pc' = [pc EXCEPT ![t] = "commit_read"]
               /\ local' = [local EXCEPT ![t] = [l EXCEPT !.readW = Null]]
               /\ UNCHANGED <<linkage, credit, stamp>>
    /\ UNCHANGED <<target, budget, queue, stamp>>

\* Whether a conflict may be answered by a rebase (Transaction::may_rebase):
\* not doomed, nothing put in limbo (no dynamic CAS).  At most once per
\* attempt (l.rebased: drive.rs commit's flag).
RebaseOK(l) == ~l.doomed /\ l.dynOp = Null

\* Report the result: committed (release tags, iteration bookkeeping) or
\* conflict: once per attempt the root is read again (drive.rs commit:
\* Transaction::rebase, a snapshot with the transaction's tags; SnapDone's
\* RebaseCheck decides), else drive() retries with a fresh snapshot; tags
\* are kept either way.
CommitDone(t) ==
    /\ pc[t] = "commit_done"
    /\ IF local[t].result = "ok" /\ local[t].comW # Null THEN
            \* committed a plain insert: the tags are cleared, the seal follows
            /\ priorityTag' = ClearMyTags(t)
            /\ pc' = [pc EXCEPT ![t] = "seal_start"]
            /\ UNCHANGED <<local, queue, budget, target, stamp>>
       ELSE IF local[t].result = "ok" THEN
            /\ priorityTag' = ClearMyTags(t)
            /\ Finish(t)
       ELSE IF ~local[t].rebased /\ RebaseOK(local[t]) THEN
            /\ pc' = [pc EXCEPT ![t] = "snap_check"]
            /\ local' = [local EXCEPT ![t] = [@ EXCEPT !.op = "rebase", !.rebased = TRUE,
                                                    !.stack = <<>>, !.readW = Null,
                                                    !.result = Null, !.bgen = 0]]
            /\ UNCHANGED <<priorityTag, queue, budget, target, stamp>>
       ELSE
            /\ pc' = [pc EXCEPT ![t] = "snap_check"]
            /\ local' = [local EXCEPT ![t] = Retry(local[t])]
            /\ UNCHANGED <<priorityTag, queue, budget, target, stamp>>
    /\ UNCHANGED <<linkage, serial, credit>>

-----------------------------------------------------------------------------
(* The seal after a plain insert (transaction/edit.rs seal_inserts).       *)

\* Loads the root: the seal starts only from the wrapper this thread's
\* commit installed (its packet: Transaction::seal_start), with a fresh
\* bundle serial; else there is nothing to seal.
SealStart(t) ==
    /\ pc[t] = "seal_start"
    /\ LET l == local[t]
           n == JobNode(target[t])
           w == linkage[n]
       IN
       IF HasPri(w) /\ (w.pkt = l.comW.pkt \/ ~SealFromOwnCommit) THEN
            LET b == Gen(serial[t], w.ser) IN
            /\ serial' = [serial EXCEPT ![t] = b]
            /\ pc' = [pc EXCEPT ![t] = "seal_phase1"]
            /\ local' = [local EXCEPT ![t] = PushL([l EXCEPT !.op = "seal", !.comW = Null],
                                                   SealFrame(n, w, b))]
       ELSE
            /\ pc' = [pc EXCEPT ![t] = "seal_end"]
            /\ local' = [local EXCEPT ![t] = [l EXCEPT !.comW = Null]]
            /\ UNCHANGED serial
    /\ UNCHANGED <<linkage, target, budget, queue, priorityTag, credit, stamp>>

\* The node a bundle step's CAS gates on.
BundleGate(t) ==
    LET f == Top(local[t]) IN
    IF pc[t] = "bundle_phase3" THEN ListOf(f.w.pkt)[f.idx] ELSE f.node

\* A seal's gated step meets a foreign tag: the seal is given up (it never
\* waits), as a disturbed one (seal_inserts' loop ends at Step::Blocked).
SealBlocked(t) ==
    /\ pc[t] \in {"bundle_phase2", "bundle_phase3", "bundle_phase4"}
    /\ Top(local[t]).seal
    /\ ~CanProceed(t, BundleGate(t))
    /\ pc' = [pc EXCEPT ![t] = "seal_end"]
    /\ local' = [local EXCEPT ![t] = [@ EXCEPT !.stack = <<>>]]
    /\ UNCHANGED <<linkage, serial, target, budget, queue, priorityTag, credit, stamp>>

\* The seal is over: the tags its lost races left are cleared, the
\* transaction ends (the negotiator dropped).
SealEnd(t) ==
    /\ pc[t] = "seal_end"
    /\ priorityTag' = ClearMyTags(t)
    /\ Finish(t)
    /\ UNCHANGED <<linkage, serial, credit>>

-----------------------------------------------------------------------------
(* dynamic.rs, driven by Transaction::insert_online (pull_child) and       *)
(* Transaction::release in the body of a transaction at P.                 *)
(* (insert also takes a snapshot of the child to rule out cycles; for a    *)
(* leaf that is one load whose result is discarded, so it is left out.)    *)
(*                                                                         *)
(* With Validate, every child CAS (ReleaseCASChild, InsertCASChild) is     *)
(* preceded by TxValidate: the transaction root must still be the wrapper  *)
(* its snapshot returned.  A doomed attempt (validation failed, or the     *)
(* release found the child changed) tags the root and retries at once:    *)
(* in Rust the body goes on, but writes no shared memory any more (a      *)
(* doomed insert_online only loads the child, and the results of those    *)
(* loads are dropped with the attempt), so going straight to the retry    *)
(* removes only thread-local steps.                                       *)

\* The transaction's serial (Transaction::serial), minted on first use.
TxSerial(t) == IF local[t].txSer # Null THEN local[t].txSer
               ELSE Gen(serial[t], IF local[t].snapW = Null THEN 0 ELSE local[t].snapW.ser)

\* The attempt is doomed (Validate): tag the transaction root (it enters
\* the negotiation), write nothing more, retry with a fresh snapshot; the
\* stamp and the tags are kept.
Doom(t, l) ==
    /\ priorityTag' = [priorityTag EXCEPT ![JobNode(target[t])] = TagAfterFail(t, JobNode(target[t]))]
    /\ pc' = [pc EXCEPT ![t] = "snap_check"]
    /\ local' = [local EXCEPT ![t] = Retry(l)]

\* One load of the transaction root's linkage: still exactly the wrapper
\* the snapshot returned (Transaction::snap_wrapper), or the attempt is
\* doomed.  (snapW is never Null here: the root of a dynamic transaction
\* always has priority in these trees; Rust re-stamps a root that was
\* bundled at snapshot time first, which is not modelled.)
TxValidate(t) ==
    /\ pc[t] = "tx_validate"
    /\ LET l == local[t] IN
       /\ Assert(l.snapW # Null, "TxValidate: the transaction root was bundled at snapshot time")
       /\ IF linkage[JobNode(target[t])] = l.snapW THEN
               /\ pc' = [pc EXCEPT ![t] = IF l.dynOp = "rel" THEN "release_cas_child"
                                                             ELSE "insert_cas_child"]
               /\ UNCHANGED <<local, priorityTag>>
          ELSE Doom(t, l)
    /\ UNCHANGED <<linkage, serial, target, budget, queue, credit, stamp>>

\* Loads the child: ready (priority and complete; with LimboReady also in
\* limbo under P, carrying a complete packet: dynamic.rs
\* insert_read_child), or unbundle it first (Promote).
Ready(w) == \/ HasPri(w) /\ Complete(w.pkt)
            \/ LimboReady /\ ~HasPri(w) /\ w.by = RootNode /\ w.pkt # Null /\ Complete(w.pkt)
InsertReadChild(t) ==
    /\ pc[t] = "insert_read_child"
    /\ LET l  == local[t]
           s  == TxSerial(t)
           cw == linkage[DynChild]
           l1 == [l EXCEPT !.txSer = s]
       IN
       /\ serial' = IF l.txSer = Null THEN [serial EXCEPT ![t] = s] ELSE serial
       /\ IF Ready(cw) THEN
               /\ pc' = [pc EXCEPT ![t] = IF Validate THEN "tx_validate" ELSE "insert_cas_child"]
               /\ local' = [local EXCEPT ![t] = [l1 EXCEPT !.dynW = cw, !.dynOp = "ins"]]
          ELSE
               /\ pc' = [pc EXCEPT ![t] = "unbundle_walk"]
               /\ local' = [local EXCEPT ![t] =
                      PushL(l1, UnbundleFrame(DynChild, cw, "promote", Null, {}))]
    /\ UNCHANGED <<linkage, target, budget, queue, priorityTag, credit, stamp>>

\* Puts the child in limbo under P carrying its packet, which the insert
\* puts in P's new slot.  (g = 1: a fresh Arc in Rust; in "reins" the
\* release's limbo wrapper has the same serial and may carry the same
\* packet.)  A doomed attempt (Validate = FALSE only) retries instead of
\* committing.
InsertCASChild(t) ==
    /\ pc[t] = "insert_cas_child"
    /\ LET l == local[t] IN
       /\ CanProceed(t, DynChild)
       /\ IF linkage[DynChild] = l.dynW THEN
               /\ linkage' = [linkage EXCEPT ![DynChild] =
                                  [LW(RootNode, l.txSer, l.dynW.pkt) EXCEPT !.g = 1]]
               /\ CasSucceeded(t, DynChild)
               /\ IF l.doomed THEN
                      /\ pc' = [pc EXCEPT ![t] = "snap_check"]
                      /\ local' = [local EXCEPT ![t] = Retry(l)]
                  ELSE
                      /\ pc' = [pc EXCEPT ![t] = "commit_start"]
                      /\ local' = [local EXCEPT ![t] =
                             [l EXCEPT !.op = "commit", !.insSlot = l.dynW.pkt, !.dynW = Null]]
          ELSE
               /\ CasFailed(t, DynChild)
               /\ pc' = [pc EXCEPT ![t] = "insert_read_child"]
               /\ local' = [local EXCEPT ![t] = [l EXCEPT !.dynW = Null]]
               /\ UNCHANGED linkage
    /\ UNCHANGED <<serial, target, budget, queue, credit, stamp>>

\* Loads the child whose bundled slot the release removes: still in the
\* state the snapshot saw (its own packet is the slot, or bundled by P),
\* or the transaction is doomed: with Validate it tags the root and
\* retries; without, it retries (StopDoomed), or (the code before the fix)
\* a "reins" body goes on to insert_online the child and only the commit
\* is skipped.
ReleaseReadChild(t) ==
    /\ pc[t] = "release_read_child"
    /\ LET l    == local[t]
           s    == TxSerial(t)
           cw   == linkage[DynChild]
           slot == l.snapPkt.sub[DynChild]
       IN
       /\ serial' = IF l.txSer = Null THEN [serial EXCEPT ![t] = s] ELSE serial
       /\ IF (HasPri(cw) /\ cw.pkt = slot) \/ cw.by = RootNode THEN
               /\ pc' = [pc EXCEPT ![t] = IF Validate THEN "tx_validate" ELSE "release_cas_child"]
               /\ local' = [local EXCEPT ![t] = [l EXCEPT !.txSer = s, !.dynW = cw, !.dynOp = "rel"]]
               /\ UNCHANGED priorityTag
          ELSE IF Validate THEN
               Doom(t, l)
          ELSE IF l.job = "reins" /\ ~StopDoomed THEN
               /\ pc' = [pc EXCEPT ![t] = "insert_read_child"]
               /\ local' = [local EXCEPT ![t] = [l EXCEPT !.txSer = s, !.doomed = TRUE]]
               /\ UNCHANGED priorityTag
          ELSE
               /\ pc' = [pc EXCEPT ![t] = "snap_check"]
               /\ local' = [local EXCEPT ![t] = Retry(l)]
               /\ UNCHANGED priorityTag
    /\ UNCHANGED <<linkage, target, budget, queue, credit, stamp>>

\* Puts the released child in limbo carrying its last packet; "reins" then
\* insert_onlines it again (the body's next call, still in the closure):
\* with LocalMoves a move, local (the released packet goes into P's new
\* slot; the limbo already carries it, so Transaction::settle_moves has
\* nothing to CAS before the commit), else a second read and CAS.
ReleaseCASChild(t) ==
    /\ pc[t] = "release_cas_child"
    /\ LET l    == local[t]
           slot == l.snapPkt.sub[DynChild]
       IN
       /\ CanProceed(t, DynChild)
       /\ IF linkage[DynChild] = l.dynW THEN
               /\ linkage' = [linkage EXCEPT ![DynChild] = LW(RootNode, l.txSer, slot)]
               /\ CasSucceeded(t, DynChild)
               /\ IF l.job = "reins" /\ ~LocalMoves THEN
                      /\ pc' = [pc EXCEPT ![t] = "insert_read_child"]
                      /\ local' = [local EXCEPT ![t] = [l EXCEPT !.dynW = Null]]
                  ELSE
                      /\ pc' = [pc EXCEPT ![t] = "commit_start"]
                      /\ local' = [local EXCEPT ![t] =
                             [l EXCEPT !.op = "commit", !.dynW = Null,
                                       !.insSlot = IF l.job = "reins" THEN slot ELSE @]]
          ELSE
               /\ CasFailed(t, DynChild)
               /\ pc' = [pc EXCEPT ![t] = "release_read_child"]
               /\ local' = [local EXCEPT ![t] = [l EXCEPT !.dynW = Null]]
               /\ UNCHANGED linkage
    /\ UNCHANGED <<serial, target, budget, queue, credit, stamp>>

-----------------------------------------------------------------------------
(* drive.rs: a body that asks to retry (iterate_commit_if returning        *)
(* false).                                                                 *)

\* The retry runs the body again on a fresh snapshot.  With
\* RetryClearsTags every tag the transaction holds is cleared; the stamp
\* is kept, or with RetryRestamps (the code: drive.rs body_retry) replaced
\* by a fresh one minted after the snapshot the body just read
\* (serial::next of its wrapper's serial).
BodyRetry(t) ==
    /\ pc[t] = "body_retry"
    /\ priorityTag' = IF RetryClearsTags THEN ClearMyTags(t) ELSE priorityTag
    /\ pc' = [pc EXCEPT ![t] = "snap_check"]
    /\ local' = [local EXCEPT ![t] = Retry(local[t])]
    /\ IF RetryRestamps THEN
            LET st == Gen(serial[t], IF local[t].snapW = Null THEN 0 ELSE local[t].snapW.ser) IN
            /\ stamp' = [stamp EXCEPT ![t] = st]
            /\ serial' = [serial EXCEPT ![t] = st]
       ELSE UNCHANGED <<serial, stamp>>
    /\ UNCHANGED <<linkage, target, budget, queue, credit>>

-----------------------------------------------------------------------------
(* negotiation.rs: a thread waiting at a CAS step on a foreign tag takes *)
(* the tag over when it is older.                                         *)

\* The node the thread's next step CASes (Null: its next step is no CAS).
CasNode(t) ==
    LET l == local[t] IN
    CASE pc[t] \in {"bundle_phase2", "bundle_phase3", "bundle_phase4"} /\ Top(l).seal -> Null
      [] pc[t] = "bundle_phase2"          -> Top(l).node
      [] pc[t] = "bundle_phase3"          -> ListOf(Top(l).w.pkt)[Top(l).idx]
      [] pc[t] = "bundle_phase4"          -> Top(l).node
      [] pc[t] = "unbundle_cas_ancestors" -> Top(l).chain[Top(l).casPos].node
      [] pc[t] = "unbundle_cas_child"     -> Top(l).node
      [] pc[t] \in {"commit_parent", "commit_try_cas"} -> JobNode(target[t])
      [] pc[t] \in {"insert_cas_child", "release_cas_child"} -> DynChild
      [] OTHER -> Null

PreemptTag(t, n) ==
    /\ Privilege
    /\ n = CasNode(t)
    /\ priorityTag[n] # Null
    /\ ~SameThread(priorityTag[n], t)
    /\ TagOlder(MyTag(t), priorityTag[n])
    /\ priorityTag' = [priorityTag EXCEPT ![n] = MyTag(t)]
    /\ UNCHANGED <<linkage, serial, pc, target, local, budget, queue, stamp, credit>>

-----------------------------------------------------------------------------
(* linkage.rs: Linkage::drop *)

\* Nodes whose last strong reference goes away during the run (a
\* definition, as ReaderThreads: a config sets `DropNodes = {"P"}`). Only
\* the root: every other node is held by its parent's packet, and a
\* released one is dropped after its attempt has ended (the explorer's
\* OpKind::Drop covers those, tla/README.md).
DropNodes == {}
ASSUME DropNodes \subseteq {RootNode}

\* Does thread t hold a strong reference to n: a transaction or snapshot
\* still to run on it (its Node handle), or an unbundle walk that has
\* upgraded its weak `bundled_by` reference to n (the frame's chain)?
Holds(t, n) ==
    \/ (\E x \in Jobs(t) : JobNode(x) = n) /\ ~(pc[t] = "idle" /\ budget[t] = 0)
    \/ \E i \in DOMAIN local[t].stack :
          \E j \in DOMAIN local[t].stack[i].chain : local[t].stack[i].chain[j].node = n

\* The last strong reference to n goes (Arc's count reaches zero; from now
\* on every Weak::upgrade of it fails), and Linkage::drop starts: it reads
\* its own wrapper, which nobody can change any more, for the children its
\* packet lists.  The drop runs on whichever thread let go last; the spec
\* gives it a process of its own (more interleavings, not fewer) with a
\* clock of its own (serial residue 0, which no thread uses).
DropStart(n) ==
    /\ dropper.st = "live"
    /\ \A t \in Threads : ~Holds(t, n)
    /\ dropper' = [node |-> n, i |-> 1, ser |-> dropper.ser,
                   st |-> IF Len(ListOf(linkage[n].pkt)) = 0 THEN "gone" ELSE "dropping"]
    /\ UNCHANGED <<linkage, serial, pc, target, local, budget, queue, priorityTag, stamp, credit>>

\* One child of the dropped node: if its wrapper still names the node
\* (bundled, or a limbo under it) and the node's packet has its slot, CAS
\* its own packet back as a priority wrapper (a fresh serial).  The code
\* loads and CASes in a loop until the CAS succeeds or the wrapper no longer
\* names the node; a failed CAS changes nothing, so the load that leads to
\* the successful CAS and the CAS are one step here.  No tag is read or
\* written: nobody can wait on a dropped node, and the hand-back only
\* replaces a wrapper every other thread can only retry on (the walk's
\* "gone" branch).
DropChild(n) ==
    /\ dropper.st = "dropping" /\ dropper.node = n
    /\ LET p   == linkage[n].pkt
           L   == ListOf(p)
           c   == L[dropper.i]
           cw  == linkage[c]
           s   == Gen(dropper.ser, cw.ser)
           mine == cw.by = n /\ p.sub[c] # Null
       IN
       /\ linkage' = IF mine THEN [linkage EXCEPT ![c] = PW(p.sub[c], s)] ELSE linkage
       /\ dropper' = [dropper EXCEPT !.i = @ + 1,
                                     !.ser = IF mine THEN s ELSE @,
                                     !.st = IF dropper.i = Len(L) THEN "gone" ELSE "dropping"]
    /\ UNCHANGED <<serial, pc, target, local, budget, queue, priorityTag, stamp, credit>>

-----------------------------------------------------------------------------
AllDone == /\ \A t \in Threads : pc[t] = "idle" /\ budget[t] = 0
           /\ \A n \in DropNodes : dropper.st = "gone"
\* Every thread that is not Endless has finished (= AllDone if Endless = {}).
OthersDone == \A t \in Threads \ Endless : pc[t] = "idle" /\ budget[t] = 0

\* The steps of thread t (the same disjuncts as NextStep, which
\* tests/tla_mapping.rs parses: keep the two lists equal), for per-thread
\* fairness (ThreadFairSpec).
ThreadStep(t) ==
    /\ \/ SnapRead(t)
       \/ SnapCheck(t)
       \/ BundlePhase1(t)
       \/ SealPhase1(t)
       \/ BundlePhase2(t)
       \/ BundlePhase3(t)
       \/ BundlePhase4(t)
       \/ UnbundleWalk(t)
       \/ UnbundleRecheck(t)
       \/ UnbundleCASAncestors(t)
       \/ UnbundleCASChild(t)
       \/ CommitStart(t)
       \/ CommitParent(t)
       \/ CommitRead(t)
       \/ CommitTryCAS(t)
       \/ CommitDone(t)
       \/ SealStart(t)
       \/ SealBlocked(t)
       \/ SealEnd(t)
       \/ InsertReadChild(t)
       \/ InsertCASChild(t)
       \/ ReleaseReadChild(t)
       \/ ReleaseCASChild(t)
       \/ TxValidate(t)
       \/ BodyRetry(t)
       \/ \E n \in Nodes : PreemptTag(t, n)
    /\ UNCHANGED dropper

NextStep ==
    \/ \E t \in Threads :
        /\ \/ SnapRead(t)
           \/ SnapCheck(t)
           \/ BundlePhase1(t)
           \/ SealPhase1(t)
           \/ BundlePhase2(t)
           \/ BundlePhase3(t)
           \/ BundlePhase4(t)
           \/ UnbundleWalk(t)
           \/ UnbundleRecheck(t)
           \/ UnbundleCASAncestors(t)
           \/ UnbundleCASChild(t)
           \/ CommitStart(t)
           \/ CommitParent(t)
           \/ CommitRead(t)
           \/ CommitTryCAS(t)
           \/ CommitDone(t)
           \/ SealStart(t)
           \/ SealBlocked(t)
           \/ SealEnd(t)
           \/ InsertReadChild(t)
           \/ InsertCASChild(t)
           \/ ReleaseReadChild(t)
           \/ ReleaseCASChild(t)
           \/ TxValidate(t)
           \/ BodyRetry(t)
           \/ \E n \in Nodes : PreemptTag(t, n)
        /\ UNCHANGED dropper
    \/ \E n \in DropNodes : DropStart(n) \/ DropChild(n)

\* Finished: a self-loop, so the deadlock check stays on; outside NextStep,
\* so weak fairness cannot be satisfied by stuttering here.
Terminating == AllDone /\ UNCHANGED vars

Next == NextStep \/ Terminating

Spec == Init /\ [][Next]_vars /\ WF_vars(NextStep)

\* Weak fairness per thread: no thread that can move is ignored forever.
\* Needed where one thread may run alone for ever (an Endless thread, a
\* body that retries): under WF_vars(NextStep) such a run is fair even
\* while another thread could move all along.
ThreadFairSpec == Init /\ [][Next]_vars /\ \A t \in Threads : WF_vars(ThreadStep(t))
                  /\ WF_vars(\E n \in DropNodes : DropStart(n) \/ DropChild(n))

EventuallyAllDone == <>AllDone
EventuallyOthersDone == <>OthersDone

-----------------------------------------------------------------------------
(* Invariants *)

\* The node's current packet (locate()): its own; or, when bundled or in
\* limbo, its slot in the current packet of its parent if that lists it
\* with a packet, else the packet a limbo wrapper carries.  Null: lost.
RECURSIVE CurPkt(_)
CurPkt(n) ==
    LET w == linkage[n] IN
    IF HasPri(w) THEN w.pkt
    ELSE LET up == CurPkt(w.by) IN
         IF up # Null /\ n \in DOMAIN up.sub /\ up.sub[n] # Null THEN up.sub[n]
         ELSE w.pkt

TypeOK ==
    /\ \A n \in Nodes : HasPri(linkage[n]) => linkage[n].pkt # Null
    /\ \A t \in Threads : serial[t] % SerialBase = t
    /\ pc \in [Threads -> {"idle", "snap_check", "bundle_phase1", "bundle_phase2",
                           "bundle_phase3", "bundle_phase4", "unbundle_walk", "unbundle_recheck",
                           "unbundle_cas_ancestors", "unbundle_cas_child",
                           "commit_start", "commit_parent", "commit_read",
                           "commit_try_cas", "commit_done", "insert_read_child",
                           "insert_cas_child", "release_read_child", "release_cas_child",
                           "tx_validate", "body_retry", "seal_start", "seal_phase1",
                           "seal_end"}]

\* A published packet that is not missing has the packet of every node of
\* its subtree (Packet::is_complete means what it says): every slot holds a
\* packet, or, for a hard-linked node, its packet is in the node's slot
\* under its other parent in the same tree; and no node's packet is in two
\* slots.  So has every snapshot a thread holds.
SnapshotConsistency ==
    /\ \A n \in Inner : HasPri(linkage[n]) /\ ~linkage[n].pkt.missing =>
            AllSubReachable(linkage[n].pkt) /\ NoDup(linkage[n].pkt)
    /\ \A t \in Threads : local[t].snapPkt # Null => Complete(local[t].snapPkt)
                                                  /\ AllSubReachable(local[t].snapPkt)
                                                  /\ NoDup(local[t].snapPkt)

\* The inner nodes not dropped: a dropped node's packet is nobody's state
\* once its drop has begun handing the children their packets back.
LiveInner == {n \in Inner : ~(dropper.node = n /\ dropper.st # "live")}

\* Linkage::drop hands every child bundled into the dropped node its packet
\* back: once it is done no wrapper names the node (a dangling Weak), and
\* until then only the node's own children do.
DropHandsBack ==
    /\ dropper.st = "gone" => \A c \in Nodes : linkage[c].by # dropper.node
    /\ dropper.st = "dropping" =>
          LET p == linkage[dropper.node].pkt IN
          \A k \in 1..(dropper.i - 1) :
              p.sub[ListOf(p)[k]] # Null => linkage[ListOf(p)[k]].by # dropper.node

\* Every node's packet is reachable, and the root always has priority.
NoPriorityLoss ==
    /\ HasPri(linkage[RootNode])
    /\ \A n \in Nodes : CurPkt(n) # Null

\* A bundled reference points at a parent of the node, and a complete packet
\* owns its subtree: every child it lists with a packet is bundled into it
\* or in limbo under it (so nobody can change a child without first CASing
\* the ancestors, which marks them missing).
BundleRefConsistency ==
    /\ \A n \in Nodes : ~HasPri(linkage[n]) => linkage[n].by \in Parents(n)
    /\ \A n \in LiveInner : (CurPkt(n) # Null /\ ~CurPkt(n).missing) =>
            \A c \in DOMAIN CurPkt(n).sub : CurPkt(n).sub[c] # Null => linkage[c].by = n

\* Hard links: in the tree of every complete current packet, each node's
\* packet sits in the slot of the parent its wrapper names (so at most one
\* place holds it, the one every bundled-by reference leads to), at every
\* depth.  Without hard links this is BundleRefConsistency at every depth.
HardLinkExclusive ==
    \A n \in LiveInner : (CurPkt(n) # Null /\ ~CurPkt(n).missing) =>
        \A e \in PEdges(CurPkt(n), n) : linkage[e[2]].by = e[1]

\* A complete packet has no missing packet below it, except, on a tree with
\* a hard link, the packet of a parent whose slot for the hard-linked node
\* is void (the node's packet is in the same tree under its other parent).
RECURSIVE MissingOnlyByVoid(_)
MissingOnlyByVoid(p) ==
    \A c \in DOMAIN p.sub : p.sub[c] # Null =>
        /\ Complete(p.sub[c]) \/ HasVoid(p.sub[c])
        /\ MissingOnlyByVoid(p.sub[c])
MissingPropagation ==
    \A n \in LiveInner : (CurPkt(n) # Null /\ ~CurPkt(n).missing) =>
        /\ AllSubReachable(CurPkt(n))
        /\ MissingOnlyByVoid(CurPkt(n))

\* On a tree without hard links no bundle ever meets a void or colliding
\* slot: the `incomplete` paths of bundle.rs are for hard links only.
NoIncompleteBundle ==
    ~HL => \A t \in Threads : \A i \in DOMAIN local[t].stack :
              local[t].stack[i].kind = "bundle" => ~local[t].stack[i].incomplete

\* Exact payloads: every published increment is in the current state (no
\* lost or doubled update), and (static trees) each finished transaction
\* published exactly its own increments.
LeafPay(c) == CurPkt(c).pay
\* Leaves a committed job increments ("cond" commits at the root; "stop"
\* commits or stops, so configs with StopThreads check only the first
\* conjunct below: every published increment is in the state).
JobIncs(x) == CASE x \in Nodes -> Incs(x) [] x = "cond" -> Incs(RootNode) [] OTHER -> {}
Contrib(t, c) ==
    (MaxCommits - budget[t]) * Cardinality({x \in Jobs(t) : c \in JobIncs(x)})
    + (IF queue[t] = {} THEN 0
       ELSE Cardinality({x \in Jobs(t) \ queue[t] : c \in JobIncs(x)}))
RECURSIVE SumContrib(_, _)
SumContrib(S, c) ==
    IF S = {} THEN 0
    ELSE LET t == CHOOSE x \in S : TRUE IN Contrib(t, c) + SumContrib(S \ {t}, c)

QuiescentCheck ==
    (\A t \in Threads : pc[t] = "idle") =>
        \A c \in Leaves : /\ LeafPay(c) = credit[c]
                          /\ (Detached = {} /\ Endless = {} /\ StopThreads = {}
                                => credit[c] = SumContrib(Threads, c))

TerminalPayloadCheck ==
    AllDone => \A c \in Leaves :
        /\ LeafPay(c) = credit[c]
        /\ Detached = {} /\ StopThreads = {} =>
              LeafPay(c) = MaxCommits * Cardinality({tx \in Threads \X (Nodes \cup {"cond"}) :
                                                     tx[2] \in Jobs(tx[1]) /\ c \in JobIncs(tx[2])})

\* Dynamic: a child P does not list is never bundled into P (only a limbo
\* wrapper, which carries the packet, may point at a parent not listing it).
DetachedNotBundled ==
    \A n \in Leaves : (linkage[n].by # Null /\ linkage[n].pkt = Null) =>
        LET up == CurPkt(linkage[n].by) IN up # Null /\ n \in DOMAIN up.sub

-----------------------------------------------------------------------------
(* VIEW: renormalise every Lamport counter in the state, keeping their    *)
(* order and which pairs differ by exactly one (every gap >= 2 becomes 2).*)
(* Sound because the protocol only compares serials (=, and < inside max) *)
(* and mints max(...) + 1: see tla/README.md "The VIEW".                  *)

RECURSIVE SerP(_)
SerP(p) == IF p = Null THEN {} ELSE {p.id} \cup UNION {SerP(p.sub[c]) : c \in DOMAIN p.sub}
SerW(w) == IF w = Null THEN {} ELSE {w.ser} \cup SerP(w.pkt)
SerS(s) == IF s = Null THEN {} ELSE {s}
SerFrame(f) ==
    SerW(f.w) \cup SerS(f.ser) \cup SerW(f.tw) \cup SerP(f.found)
    \cup UNION {SerP(f.coll[i].pkt) \cup SerW(f.coll[i].w) : i \in DOMAIN f.coll}
    \cup UNION {SerW(f.chain[i].w) : i \in DOMAIN f.chain}
    \cup UNION {SerW(f.copies[i]) : i \in DOMAIN f.copies}
SerL(l) ==
    SerP(l.snapPkt) \cup SerW(l.snapW) \cup SerW(l.readW) \cup SerW(l.comW)
    \cup SerS(l.txSer) \cup SerW(l.dynW) \cup SerP(l.insSlot)
    \cup UNION {SerFrame(l.stack[i]) : i \in DOMAIN l.stack}
AllSerials ==
    {serial[t] : t \in Threads} \cup {dropper.ser}
    \cup UNION {SerS(stamp[t]) : t \in Threads}
    \cup UNION {SerS(priorityTag[n]) : n \in Nodes}
    \cup UNION {SerW(linkage[n]) : n \in Nodes}
    \cup UNION {SerL(local[t]) : t \in Threads}

\* m[c] = sum over the counters d below c of (1 if d + 1 is a counter, else 2).
Renorm(S) ==
    LET C == {Cnt(s) : s \in S} IN
    [c \in C |-> 2 * Cardinality({d \in C : d < c})
                 - Cardinality({d \in C : d < c /\ d + 1 \in C})]

NS(m, s) == IF s = Null THEN Null ELSE m[Cnt(s)] * SerialBase + (s % SerialBase)
RECURSIVE NP(_, _)
NP(m, p) == IF p = Null THEN Null
            ELSE [p EXCEPT !.id = NS(m, @), !.sub = [c \in DOMAIN @ |-> NP(m, @[c])]]
NW(m, w) == IF w = Null THEN Null ELSE [w EXCEPT !.pkt = NP(m, @), !.ser = NS(m, @)]
NFrame(m, f) ==
    [f EXCEPT !.w = NW(m, @), !.ser = NS(m, @), !.tw = NW(m, @), !.found = NP(m, @),
              !.coll = [i \in DOMAIN @ |-> [pkt |-> NP(m, @[i].pkt), w |-> NW(m, @[i].w)]],
              !.chain = [i \in DOMAIN @ |-> [node |-> @[i].node, w |-> NW(m, @[i].w)]],
              !.copies = [i \in DOMAIN @ |-> NW(m, @[i])]]
NL(m, l) ==
    [l EXCEPT !.snapPkt = NP(m, @), !.snapW = NW(m, @), !.readW = NW(m, @), !.comW = NW(m, @),
              !.txSer = NS(m, @), !.dynW = NW(m, @), !.insSlot = NP(m, @),
              !.stack = [i \in DOMAIN @ |-> NFrame(m, @[i])]]

View ==
    LET m == Renorm(AllSerials) IN
    <<[n \in Nodes |-> NW(m, linkage[n])],
      [t \in Threads |-> NS(m, serial[t])],
      pc, target,
      [t \in Threads |-> NL(m, local[t])],
      budget, queue,
      [n \in Nodes |-> NS(m, priorityTag[n])],
      [t \in Threads |-> NS(m, stamp[t])],
      credit,
      [dropper EXCEPT !.ser = NS(m, @)]>>

\* Serials are fresh names: every serial of thread t in the state has a
\* counter no larger than t's thread-local serial, so Gen(t, _) never mints
\* a serial that is already somewhere in the state (the premise of the VIEW
\* soundness argument, tla/README.md).
SerialFreshness ==
    \A s \in AllSerials :
        Cnt(s) <= Cnt(IF s % SerialBase = 0 THEN dropper.ser ELSE serial[s % SerialBase])

\* The largest Lamport counter in the state (for bound experiments).
MaxCounter == LET C == {Cnt(s) : s \in AllSerials} IN CHOOSE c \in C : \A d \in C : d <= c
=============================================================================
